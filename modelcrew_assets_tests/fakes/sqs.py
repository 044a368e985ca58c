"""SQS for tests: a queue on the same moto server as S3, wired to the test bucket with the files in
deploy/s3-upload-events/, so every upload reaches the queue the way S3 sends it (moto emits the
ObjectCreated records and the s3:TestEvent itself; nothing here writes an event by hand)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.settings import UPLOAD_QUEUE_URL_ENV
from modelcrew_assets_tests.fakes.aws_env import TEST_REGION

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "s3-upload-events"


@dataclass(frozen=True)
class UploadEventsQueue:
    url: str
    arn: str
    client: Any

    def send(self, body: str) -> None:
        """A message as another sender (or SQS redelivering a copy) would put it on the queue."""
        self.client.send_message(QueueUrl=self.url, MessageBody=body)

    def take_all(self) -> list[str]:
        """Receive and delete everything waiting: the bodies, as if the messages had been lost."""
        bodies = []
        while messages := self.client.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                bodies.append(message["Body"])
                self.client.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return bodies

    def counts(self) -> tuple[int, int]:
        """(waiting, received but not yet deleted)."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)["Attributes"]
        return int(attributes[names[0]]), int(attributes[names[1]])


def connect_upload_events(endpoint: str, bucket: str, key_prefix: str) -> UploadEventsQueue:
    """Create a queue with the deploy queue policy and point the bucket's notifications at it."""
    sqs = boto3.client("sqs", region_name=TEST_REGION, endpoint_url=endpoint)
    url = sqs.create_queue(QueueName=f"modelcrew-uploads-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    account = arn.split(":")[4]

    policy = json.loads((DEPLOY / "queue-policy.json").read_text())
    statement = policy["Statement"][0]
    statement["Resource"] = arn
    statement["Condition"] = {
        "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"},
        "StringEquals": {"aws:SourceAccount": account},
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    point_bucket_at(endpoint, bucket, key_prefix, arn)
    return UploadEventsQueue(url=url, arn=arn, client=sqs)


def point_bucket_at(endpoint: str, bucket: str, key_prefix: str, queue_arn: str) -> None:
    """The bucket notification configuration from deploy/; S3 (and moto) answers it with an s3:TestEvent."""
    notification = json.loads((DEPLOY / "bucket-notification.json").read_text())
    queue_config = notification["QueueConfigurations"][0]
    queue_config["QueueArn"] = queue_arn
    queue_config["Filter"]["Key"]["FilterRules"][0]["Value"] = f"{key_prefix}uploads/"
    boto3.client("s3", region_name=TEST_REGION, endpoint_url=endpoint).put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration=notification
    )


@pytest.fixture
def upload_queue(s3_storage: StorageResource, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> UploadEventsQueue:
    """The s3_storage bucket's uploads/ events in a fresh queue, named by MODELCREW_UPLOAD_QUEUE_URL."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    backend = s3_storage.backend
    queue = connect_upload_events(moto_endpoint, backend.bucket, backend.prefix)
    monkeypatch.setenv(UPLOAD_QUEUE_URL_ENV, queue.url)
    return queue


@pytest.fixture
def s3_queue_storage(s3_storage: StorageResource, upload_queue: UploadEventsQueue) -> StorageResource:
    """S3 storage whose uploads/ events reach the upload sensor through the queue."""
    return s3_storage
