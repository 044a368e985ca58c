"""S3 for tests: moto in server mode on loopback, so boto3 talks real HTTP to it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets_tests.fakes.aws_env import TEST_REGION



@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    # moto logs every request (presigned URLs included): keep test output to what matters.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def make_bucket(endpoint: str) -> str:
    bucket = f"modelcrew-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name=TEST_REGION, endpoint_url=endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": TEST_REGION}
    )
    return bucket


@pytest.fixture
def s3_storage(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> StorageResource:
    """A StorageResource on a fresh private bucket; AWS_ENDPOINT_URL_S3 points boto3 at moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    return StorageResource(url=f"s3://{make_bucket(moto_endpoint)}/studio", region=TEST_REGION)
