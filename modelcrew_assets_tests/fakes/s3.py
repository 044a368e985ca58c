"""S3 for tests: moto in server mode on loopback, so boto3 talks real HTTP to it.

STS is the same server (AWS_ENDPOINT_URL_STS), with the pod role RunPod pods assume. moto checks no
permissions by default; `iam_enforcing_s3` switches its IAM checks on (moto's reset-auth) for one test and
adds the rule moto leaves out: a role session's permissions are the intersection of the role's policies
and the session policy passed to AssumeRole (moto stores that policy but never evaluates it)."""

from __future__ import annotations

import functools
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
import requests
from moto.iam.access_control import AssumedRoleAccessKey, IAMPolicy, IAMRequestBase, PermissionResult
from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer
from moto.sts.models import sts_backends

from modelcrew_assets.resources.gpu.pod_credentials import POD_ROLE_ARN_ENV
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets_tests.fakes.aws_env import TEST_REGION

POD_ROLE_NAME = "modelcrew-pod"
_TRUST_ANY_USER = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
}


def _atomic_put_object(put_object):
    """S3 decides a conditional PUT (If-None-Match: *) atomically: of writers racing for one key exactly one
    succeeds and the others get 412. moto checks for the key and then writes it, each request on its own
    server thread, so two racing writers could both pass the check (seen: 2 winners of 8). One lock around
    moto's PUT makes its check and write one step, as on S3."""
    lock = threading.Lock()

    @functools.wraps(put_object)
    def locked(self):
        with lock:
            return put_object(self)

    return locked


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    # moto logs every request (presigned URLs included): keep test output to what matters.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    unlocked = S3Response.put_object
    S3Response.put_object = _atomic_put_object(unlocked)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    S3Response.put_object = unlocked


@pytest.fixture(scope="session")
def pod_role_arn(moto_endpoint: str) -> str:
    """The role pods get sessions of; its own policy reaches the whole studio bucket, as a real one would."""
    iam = boto3.client("iam", region_name=TEST_REGION, endpoint_url=moto_endpoint)
    role = iam.create_role(RoleName=POD_ROLE_NAME, AssumeRolePolicyDocument=json.dumps(_TRUST_ANY_USER))
    studio_s3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_role_policy(RoleName=POD_ROLE_NAME, PolicyName="studio-bucket", PolicyDocument=json.dumps(studio_s3))
    return role["Role"]["Arn"]


def make_bucket(endpoint: str) -> str:
    bucket = f"modelcrew-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name=TEST_REGION, endpoint_url=endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": TEST_REGION}
    )
    return bucket


@pytest.fixture
def s3_storage(moto_endpoint: str, pod_role_arn: str, monkeypatch: pytest.MonkeyPatch) -> StorageResource:
    """A StorageResource on a fresh private bucket; AWS_ENDPOINT_URL_S3/STS point boto3 at moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_endpoint)
    monkeypatch.setenv(POD_ROLE_ARN_ENV, pod_role_arn)
    return StorageResource(url=f"s3://{make_bucket(moto_endpoint)}/studio", region=TEST_REGION)


@dataclass(frozen=True)
class IamAccount:
    endpoint: str
    access_key_id: str  # the orchestrator's long-lived IAM user key (AKIA...)
    secret_access_key: str
    pod_role_arn: str


def _check_session_policy_too(original):
    def check_action_permitted(self: IAMRequestBase, resource: str) -> None:
        original(self, resource)
        key = self._access_key
        if isinstance(key, AssumedRoleAccessKey):
            session = sts_backends[key.account_id][key.partition].get_assumed_role_from_access_key(key._access_key_id)
            policy = session.policy if session is not None else None
            if policy and IAMPolicy(policy).is_action_permitted(self._action, resource) != PermissionResult.PERMITTED:
                self._raise_access_denied()

    return check_action_permitted


@pytest.fixture
def iam_enforcing_s3(moto_endpoint: str, pod_role_arn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[IamAccount]:
    """moto with IAM checks on: only signed requests by known keys, allowed by their policies, pass."""
    iam = boto3.client("iam", region_name=TEST_REGION, endpoint_url=moto_endpoint)
    user = f"orchestrator-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    everything = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sts:*"], "Resource": "*"}],
    }
    iam.put_user_policy(UserName=user, PolicyName="orchestrator", PolicyDocument=json.dumps(everything))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.setattr(
        IAMRequestBase, "check_action_permitted", _check_session_policy_too(IAMRequestBase.check_action_permitted)
    )
    requests.post(f"{moto_endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    try:
        yield IamAccount(moto_endpoint, key["AccessKeyId"], key["SecretAccessKey"], pod_role_arn)
    finally:
        requests.post(f"{moto_endpoint}/moto-api/reset-auth", data=b"inf", timeout=10).raise_for_status()
