"""S3 event notifications for uploads/: drain the SQS queue S3 sends ObjectCreated events to, and say which
upload names (model folders, or zips' stems) they touched. Dagster-free; the upload sensor decides.

The sensor re-reads the current state of each touched name, never the event's, so order, duplicates and
redeliveries need no bookkeeping here: the model's fingerprint is the same and nothing new starts."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus

import boto3
from botocore.config import Config

from modelcrew_assets.intake.upload_scan import is_junk_name
from modelcrew_assets.settings import (
    UPLOAD_QUEUE_MAX_MESSAGES_ENV,
    UPLOAD_QUEUE_URL_ENV,
    UPLOAD_QUEUE_VISIBILITY_SECONDS_ENV,
    UPLOAD_RECONCILE_SECONDS_ENV,
    int_from_env,
)
from modelcrew_assets.storage_keys import UPLOADS, InvalidKeyError, validate_key

SQS_BATCH = 10  # the most one ReceiveMessage / DeleteMessageBatch call takes
MAX_MESSAGES_LIMIT = 1000  # receipt handles ride in the sensor cursor until the next tick deletes them
SQS_MAX_VISIBILITY_SECONDS = 12 * 3600

# The bucket and full key of an object -> its storage key, or None when it is not this storage's.
StorageKeyOf = Callable[[str, str], "str | None"]


@dataclass(frozen=True)
class UploadQueueSettings:
    queue_url: str
    max_messages: int
    visibility_seconds: int
    reconcile_seconds: int

    @classmethod
    def from_env(cls) -> UploadQueueSettings | None:
        """None when MODELCREW_UPLOAD_QUEUE_URL is unset: the sensor lists uploads/ every tick."""
        queue_url = os.environ.get(UPLOAD_QUEUE_URL_ENV, "").strip()
        if not queue_url:
            return None
        settings = cls(
            queue_url=queue_url,
            max_messages=int_from_env(UPLOAD_QUEUE_MAX_MESSAGES_ENV, 100),
            # Long enough to outlast the gap until the next tick, which deletes what this one received.
            visibility_seconds=int_from_env(UPLOAD_QUEUE_VISIBILITY_SECONDS_ENV, 300),
            reconcile_seconds=int_from_env(UPLOAD_RECONCILE_SECONDS_ENV, 3600),
        )
        if settings.max_messages > MAX_MESSAGES_LIMIT:
            raise ValueError(
                f"{UPLOAD_QUEUE_MAX_MESSAGES_ENV}={settings.max_messages} is over {MAX_MESSAGES_LIMIT}; lower it"
            )
        if settings.visibility_seconds > SQS_MAX_VISIBILITY_SECONDS:
            raise ValueError(
                f"{UPLOAD_QUEUE_VISIBILITY_SECONDS_ENV}={settings.visibility_seconds} is over SQS's maximum "
                f"of {SQS_MAX_VISIBILITY_SECONDS} s; lower it"
            )
        return settings


@dataclass(frozen=True)
class UploadEvents:
    """What one tick took from the queue."""

    names: frozenset[str]  # uploads/<name>/... or uploads/<name>.zip
    receipts: tuple[str, ...]  # to delete once this tick's result is stored
    test_events: tuple[str, ...]  # a log line per s3:TestEvent
    malformed: tuple[str, ...]  # a log line per message that is no S3 event


class MalformedEventError(ValueError):
    """A queue message that is not an S3 event notification."""


def upload_names_in(body: str, storage_key_of: StorageKeyOf) -> set[str] | None:
    """The upload names an S3 event message touches; None for S3's s3:TestEvent."""
    try:
        message = json.loads(body)
    except ValueError:
        raise MalformedEventError("not JSON") from None
    if isinstance(message, dict) and message.get("Event") == "s3:TestEvent":
        return None
    records = message.get("Records") if isinstance(message, dict) else None
    if not isinstance(records, list):
        raise MalformedEventError("no Records list")
    names: set[str] = set()
    for record in records:
        try:
            created = str(record["eventName"]).startswith("ObjectCreated:")
            bucket = record["s3"]["bucket"]["name"]
            # S3 URL-encodes keys in events ('red flower.jpg' -> 'red+flower.jpg').
            object_key = unquote_plus(record["s3"]["object"]["key"])
        except (KeyError, TypeError):
            raise MalformedEventError("a record lacks eventName, s3.bucket.name or s3.object.key") from None
        key = storage_key_of(bucket, object_key) if created else None
        name = upload_name(key) if key else None
        if name is not None:
            names.add(name)
    return names


def upload_name(key: str) -> str | None:
    """uploads/<name>/... -> name; uploads/<name>.zip -> name; None for anything else or platform junk."""
    parts = key.split("/")
    if parts[0] != UPLOADS or len(parts) < 2 or is_junk_name(parts[-1]):
        return None
    if len(parts) == 2:
        if not parts[1].lower().endswith(".zip"):
            return None
        name = parts[1][: -len(".zip")]
    else:
        name = parts[1]
    try:
        validate_key(f"{UPLOADS}/{name}/x")
    except InvalidKeyError:
        return None
    return name or None


class UploadEventQueue:
    """The SQS queue S3 sends uploads/ events to (boto3 honours AWS_ENDPOINT_URL_SQS)."""

    def __init__(self, settings: UploadQueueSettings, region: str | None):
        self.settings = settings
        self.client = _sqs_client(region, os.environ.get("AWS_ENDPOINT_URL_SQS"))

    def receive(self, storage_key_of: StorageKeyOf) -> UploadEvents:
        """Up to max_messages events; each stays invisible to other receivers for visibility_seconds."""
        names: set[str] = set()
        receipts: list[str] = []
        test_events: list[str] = []
        malformed: list[str] = []
        while len(receipts) < self.settings.max_messages:
            answer = self.client.receive_message(
                QueueUrl=self.settings.queue_url,
                MaxNumberOfMessages=min(SQS_BATCH, self.settings.max_messages - len(receipts)),
                # Short polling: an answer that misses a message is made up for by the next tick.
                WaitTimeSeconds=0,
                VisibilityTimeout=self.settings.visibility_seconds,
            )
            messages = answer.get("Messages", [])
            if not messages:
                break
            for message in messages:
                receipts.append(message["ReceiptHandle"])
                about = f"upload queue message {message.get('MessageId')}"
                try:
                    found = upload_names_in(message.get("Body", ""), storage_key_of)
                except MalformedEventError as error:
                    malformed.append(f"{about}: malformed ({error}), not an S3 event notification; dropped")
                    continue
                if found is None:
                    test_events.append(
                        f"{about}: s3:TestEvent (S3 sends one when notifications are configured); dropped"
                    )
                else:
                    names |= found
        return UploadEvents(frozenset(names), tuple(receipts), tuple(test_events), tuple(malformed))

    def delete(self, receipts: Iterable[str]) -> list[str]:
        """Delete received messages; returns the SQS error codes of those it could not delete."""
        pending = list(receipts)
        failures: list[str] = []
        for start in range(0, len(pending), SQS_BATCH):
            batch = pending[start : start + SQS_BATCH]
            answer = self.client.delete_message_batch(
                QueueUrl=self.settings.queue_url,
                Entries=[{"Id": str(index), "ReceiptHandle": handle} for index, handle in enumerate(batch)],
            )
            failures += [failure.get("Code", "unknown") for failure in answer.get("Failed", [])]
        return failures


@functools.lru_cache(maxsize=4)
def _sqs_client(region: str | None, endpoint_url: str | None):
    # One client per process: building one loads botocore's service model, a cost every tick would pay.
    return boto3.client(
        "sqs",
        region_name=region,
        endpoint_url=endpoint_url or None,
        config=Config(retries={"max_attempts": 5, "mode": "adaptive"}),
    )
