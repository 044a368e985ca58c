"""The upload sensor on S3 with event notifications: uploads arrive through SQS (moto emits them as S3 does),
a steady tick lists only the models whose keys arrived, and the full listing stays as the reconciliation."""

from __future__ import annotations

import json
import time

import pytest

from modelcrew_assets.resources.storage_backends import S3Backend
from modelcrew_assets.settings import (
    UPLOAD_QUEUE_MAX_MESSAGES_ENV,
    UPLOAD_QUEUE_URL_ENV,
    UPLOAD_QUEUE_VISIBILITY_SECONDS_ENV,
    UPLOAD_RECONCILE_SECONDS_ENV,
)
from modelcrew_assets.storage_keys import targets_prefix
from modelcrew_assets_tests.builders import jpeg_bytes, target_variants, upload_model
from modelcrew_assets_tests.builders import tick_registering_partitions as tick
from modelcrew_assets_tests.fakes.sqs import point_bucket_at


class ListingCalls:
    """Every listing the S3 storage makes (any StorageResource copy Dagster builds), by prefix."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.prefixes: list[str] = []
        real_list = S3Backend.list

        def counted(backend, prefix):
            self.prefixes.append(prefix)
            return real_list(backend, prefix)

        monkeypatch.setattr(S3Backend, "list", counted)

    def take(self) -> list[str]:
        taken, self.prefixes = self.prefixes, []
        return taken


@pytest.fixture
def calls(settled, monkeypatch) -> ListingCalls:
    """Listings from after the first tick on."""
    return ListingCalls(monkeypatch)


def add_targets(storage, astronaut, model="blondie", count=2):
    for index, image in enumerate(target_variants(astronaut, count + 3)[3:]):
        storage.put_bytes(f"{targets_prefix(model)}more-{index}.jpg", jpeg_bytes(image))


@pytest.fixture
def settled(instance, s3_storage, upload_queue):
    """A sensor that has done its first full listing (of an empty bucket) and holds that cursor."""
    return tick(instance, s3_storage).cursor


def test_new_model_via_the_queue_starts_one_run_without_a_full_listing(calls, instance, s3_storage, settled, astronaut):
    upload_model(s3_storage, astronaut, "blondie")
    upload_model(s3_storage, astronaut, "brunette")
    result = tick(instance, s3_storage, settled)
    assert sorted(request.partition_key for request in result.run_requests) == ["blondie", "brunette"]
    assert sorted(calls.take()) == ["uploads/blondie/", "uploads/brunette/"]

    add_targets(s3_storage, astronaut, "blondie")
    more = tick(instance, s3_storage, result.cursor)
    assert [request.partition_key for request in more.run_requests] == ["blondie"]
    assert calls.take() == ["uploads/blondie/"], "only the model whose keys arrived is listed"


def test_lost_event_is_caught_by_the_reconciliation(
    calls, instance, s3_storage, upload_queue, settled, astronaut, monkeypatch
):
    upload_model(s3_storage, astronaut, "blondie")
    assert upload_queue.take_all(), "the upload's events were on the queue before they were lost"
    missed = tick(instance, s3_storage, settled)
    assert not missed.run_requests and calls.take() == []

    monkeypatch.setenv(UPLOAD_RECONCILE_SECONDS_ENV, "1")
    time.sleep(1.1)
    reconciled = tick(instance, s3_storage, missed.cursor)
    assert [request.partition_key for request in reconciled.run_requests] == ["blondie"]
    assert calls.take() == ["uploads/"]
    # Back to an hour: with 1 s, a busy machine's next tick came over a second later and rightly listed again.
    monkeypatch.setenv(UPLOAD_RECONCILE_SECONDS_ENV, "3600")
    assert not tick(instance, s3_storage, reconciled.cursor).run_requests
    assert calls.take() == [], "the next tick is back on the queue"


def test_redelivered_event_starts_nothing_new(calls, instance, s3_storage, upload_queue, settled, astronaut):
    upload_model(s3_storage, astronaut, "blondie")
    bodies = upload_queue.take_all()
    for body in bodies:
        upload_queue.send(body)
    first = tick(instance, s3_storage, settled)
    assert len(first.run_requests) == 1
    for body in bodies:  # SQS delivers at least once: the same S3 events again
        upload_queue.send(body)
    calls.take()
    again = tick(instance, s3_storage, first.cursor)
    assert not again.run_requests
    assert calls.take() == ["uploads/blondie/"]


def test_tick_that_fails_after_receiving_gets_its_events_back(
    instance, s3_storage, upload_queue, settled, astronaut, monkeypatch
):
    monkeypatch.setenv(UPLOAD_QUEUE_VISIBILITY_SECONDS_ENV, "1")
    upload_model(s3_storage, astronaut, "blondie")

    def storage_down(backend, prefix):
        raise ConnectionError("S3 went away mid-tick")

    with monkeypatch.context() as outage:
        outage.setattr(S3Backend, "list", storage_down)
        with pytest.raises(ConnectionError):
            tick(instance, s3_storage, settled)
    assert upload_queue.counts()[1] > 0, "received, not deleted"

    time.sleep(1.1)  # the visibility timeout brings the events back
    retried = tick(instance, s3_storage, settled)
    assert [request.partition_key for request in retried.run_requests] == ["blondie"]


def test_events_are_deleted_by_the_tick_after_the_one_that_used_them(
    instance, s3_storage, upload_queue, settled, astronaut
):
    upload_model(s3_storage, astronaut, "blondie")
    first = tick(instance, s3_storage, settled)
    assert len(first.run_requests) == 1
    waiting, in_flight = upload_queue.counts()
    assert waiting == 0 and in_flight == 5, "kept until the result of the tick is stored"
    tick(instance, s3_storage, first.cursor)
    assert upload_queue.counts() == (0, 0)


def test_s3_test_event_and_malformed_messages_are_dropped_with_a_log_line(
    calls, instance, s3_storage, upload_queue, settled, capfd, moto_endpoint
):
    backend = s3_storage.backend
    point_bucket_at(moto_endpoint, backend.bucket, backend.prefix, upload_queue.arn)  # configured again: a TestEvent
    upload_queue.send("not json at all")
    upload_queue.send(json.dumps({"Records": [{"eventSource": "aws:s3"}]}))
    result = tick(instance, s3_storage, settled)
    assert not result.run_requests and calls.take() == []
    log = capfd.readouterr().err
    assert "s3:TestEvent" in log
    assert log.count("malformed") == 2
    tick(instance, s3_storage, result.cursor)
    assert upload_queue.counts() == (0, 0), "dropped messages are deleted too, not received forever"


def test_an_uploads_folder_with_spaces_arrives_decoded(instance, s3_storage, settled):
    s3_storage.put_bytes("uploads/Bad Name/model.toml", b"x")
    result = tick(instance, s3_storage, settled)
    assert "'Bad Name' is not a valid model name" in result.skip_reason.skip_message


def test_a_tick_takes_a_bounded_number_of_events(instance, s3_storage, upload_queue, settled, astronaut, monkeypatch):
    monkeypatch.setenv(UPLOAD_QUEUE_MAX_MESSAGES_ENV, "3")
    upload_model(s3_storage, astronaut, "blondie")  # five keys, five events
    first = tick(instance, s3_storage, settled)
    assert upload_queue.counts() == (2, 3)
    tick(instance, s3_storage, first.cursor)
    assert upload_queue.counts() == (0, 2)


def test_an_unreachable_queue_falls_back_to_the_full_listing(
    calls, instance, s3_storage, upload_queue, settled, astronaut, capfd, monkeypatch
):
    monkeypatch.setenv(UPLOAD_QUEUE_URL_ENV, upload_queue.url + "-missing")
    upload_model(s3_storage, astronaut, "blondie")
    result = tick(instance, s3_storage, settled)
    assert [request.partition_key for request in result.run_requests] == ["blondie"]
    assert calls.take() == ["uploads/"]
    assert "listing all of uploads/ this tick instead" in capfd.readouterr().err


def test_local_storage_keeps_the_listing_when_a_queue_is_set(instance, local_storage, astronaut, monkeypatch, capfd):
    monkeypatch.setenv(UPLOAD_QUEUE_URL_ENV, "https://sqs.us-east-2.amazonaws.com/111122223333/modelcrew-uploads")
    first = tick(instance, local_storage)
    upload_model(local_storage, astronaut, "blondie")
    result = tick(instance, local_storage, first.cursor)
    assert [request.partition_key for request in result.run_requests] == ["blondie"]
    assert f"{UPLOAD_QUEUE_URL_ENV} is set but storage is local" in capfd.readouterr().err
