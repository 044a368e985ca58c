"""Reading S3 event messages: which upload names they touch (pure; the sensor tests run them through SQS)."""

import json

import pytest

from modelcrew_assets.intake.upload_events import MalformedEventError, UploadQueueSettings, upload_names_in
from modelcrew_assets.settings import UPLOAD_QUEUE_MAX_MESSAGES_ENV, UPLOAD_QUEUE_URL_ENV


def storage_key_of(bucket, object_key):
    """The storage s3://studio-bucket/studio."""
    return object_key[len("studio/") :] if bucket == "studio-bucket" and object_key.startswith("studio/") else None


def event(key, bucket="studio-bucket", name="ObjectCreated:Put"):
    record = {"eventSource": "aws:s3", "eventName": name, "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}
    return json.dumps({"Records": [record]})


@pytest.mark.parametrize(
    ("key", "names"),
    [
        ("studio/uploads/blondie/targets/a.jpg", {"blondie"}),
        ("studio/uploads/blondie.zip", {"blondie"}),
        ("studio/uploads/Bad+Name/model.toml", {"Bad Name"}),  # S3 writes a space as '+'
        ("studio%2Fuploads%2Fred+flower%2Fmodel.toml", {"red flower"}),  # and may escape the slashes
        ("studio/uploads/blondie/targets/.DS_Store", set()),
        ("studio/uploads/notes.txt", set()),
        ("studio/models/blondie/captions/a.txt", set()),
        ("elsewhere/uploads/blondie/model.toml", set()),
    ],
)
def test_event_keys_become_upload_names(key, names):
    assert upload_names_in(event(key), storage_key_of) == names


def test_events_from_another_bucket_or_not_a_creation_touch_nothing():
    assert upload_names_in(event("studio/uploads/a/model.toml", bucket="other"), storage_key_of) == set()
    removed = event("studio/uploads/a/model.toml", name="ObjectRemoved:Delete")
    assert upload_names_in(removed, storage_key_of) == set()


def test_test_event_is_recognised_and_malformed_bodies_say_what_is_wrong():
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "studio-bucket"})
    assert upload_names_in(test_event, storage_key_of) is None
    for body, why in [
        ("{oops", "not JSON"),
        (json.dumps(["x"]), "no Records"),
        (json.dumps({"Records": [{"s3": {}}]}), "lacks eventName"),
        (json.dumps({"Records": ["x"]}), "lacks eventName"),
    ]:
        with pytest.raises(MalformedEventError, match=why):
            upload_names_in(body, storage_key_of)


def test_queue_settings_come_from_the_environment(monkeypatch):
    monkeypatch.delenv(UPLOAD_QUEUE_URL_ENV, raising=False)
    assert UploadQueueSettings.from_env() is None
    monkeypatch.setenv(UPLOAD_QUEUE_URL_ENV, "https://sqs.us-east-2.amazonaws.com/111122223333/modelcrew-uploads")
    settings = UploadQueueSettings.from_env()
    assert (settings.max_messages, settings.visibility_seconds, settings.reconcile_seconds) == (100, 300, 3600)
    monkeypatch.setenv(UPLOAD_QUEUE_MAX_MESSAGES_ENV, "5000")
    with pytest.raises(ValueError, match=UPLOAD_QUEUE_MAX_MESSAGES_ENV):
        UploadQueueSettings.from_env()
