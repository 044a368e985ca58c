"""Time upload-sensor ticks with 1,000 and with 10,000 existing upload keys (moto S3 and SQS server).

For each size, two ticks by listing (no queue: today's fallback, the baseline) and two with S3's event
notifications in SQS: the first sees every model as new (with the queue it is the full reconciliation),
the second is the steady state (one model received one more target). Prints the ratio 10k / 1k for each;
the goal is a queue steady tick whose ratio is at most 2.
Run: .venv/bin/python benchmarks/sensor_tick.py
"""

from __future__ import annotations

import logging
import os
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import boto3
import dagster as dg
from moto.server import ThreadedMotoServer

from modelcrew_assets.definitions import defs
from modelcrew_assets.intake.sensors import model_uploads_sensor
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.settings import UPLOAD_QUEUE_URL_ENV
from modelcrew_assets_tests.builders import manifest_text
from modelcrew_assets_tests.fakes.aws_env import TEST_REGION, use_test_aws_environment
from modelcrew_assets_tests.fakes.sqs import connect_upload_events

KEYS_PER_MODEL = 100
STEADY_TICKS = 3  # the median of these is reported: the machines these run on are shared and noisy


def populate(client, bucket: str, total_keys: int) -> list[str]:
    models = [f"model-{index:04d}" for index in range(total_keys // KEYS_PER_MODEL)]
    jobs = []
    for model in models:
        jobs.append((f"uploads/{model}/model.toml", manifest_text(model, "trigger").encode()))
        jobs.append((f"uploads/{model}/face/face.jpg", b"face"))
        jobs += [(f"uploads/{model}/targets/{i:04d}.jpg", b"target") for i in range(KEYS_PER_MODEL - 2)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda job: client.put_object(Bucket=bucket, Key=job[0], Body=job[1]), jobs))
    return models


def timed_tick(instance, storage, cursor):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"storage": storage}, definitions=defs
    )
    start = time.perf_counter()
    result = model_uploads_sensor(context)
    return time.perf_counter() - start, result


@dataclass(frozen=True)
class TickTimes:
    first: float  # every model new: a full listing, a manifest read and a run request per model
    steady: float  # one model received one more target (median of STEADY_TICKS)


def steady_ticks(instance, storage, client, bucket: str, model: str, cursor: str) -> float:
    seconds = []
    for index in range(STEADY_TICKS):
        client.put_object(Bucket=bucket, Key=f"uploads/{model}/targets/new-{index}.jpg", Body=b"new")
        elapsed, result = timed_tick(instance, storage, cursor)
        assert [request.partition_key for request in result.run_requests] == [model]
        seconds.append(elapsed)
        cursor = result.cursor
    return statistics.median(seconds)


def listing_ticks(storage, client, bucket: str, models: list[str]) -> TickTimes:
    os.environ.pop(UPLOAD_QUEUE_URL_ENV, None)
    with dg.instance_for_test() as instance:
        first_seconds, first = timed_tick(instance, storage, None)
        assert len(first.run_requests) == len(models)
        return TickTimes(first_seconds, steady_ticks(instance, storage, client, bucket, models[0], first.cursor))


def queue_ticks(endpoint: str, storage, client, bucket: str, models: list[str]) -> TickTimes:
    """The same archive with S3's events in SQS; the queue is wired after the archive was uploaded, as a
    deployment adding it to an existing bucket would be (its first tick is the full reconciliation)."""
    os.environ[UPLOAD_QUEUE_URL_ENV] = connect_upload_events(endpoint, bucket, "").url
    with dg.instance_for_test() as instance:
        first_seconds, first = timed_tick(instance, storage, None)
        assert len(first.run_requests) == len(models)
        return TickTimes(first_seconds, steady_ticks(instance, storage, client, bucket, models[-1], first.cursor))


def measure(endpoint: str, total_keys: int) -> tuple[TickTimes, TickTimes]:
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", region_name=TEST_REGION, endpoint_url=endpoint)
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": TEST_REGION})
    models = populate(client, bucket, total_keys)
    storage = StorageResource(url=f"s3://{bucket}", region=TEST_REGION)
    return listing_ticks(storage, client, bucket, models), queue_ticks(endpoint, storage, client, bucket, models)


def main() -> None:
    use_test_aws_environment()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL_S3"] = os.environ["AWS_ENDPOINT_URL_SQS"] = endpoint
    try:
        small = measure(endpoint, 1_000)
        large = measure(endpoint, 10_000)
    finally:
        server.stop()
    rows = [
        ("listing, first tick (all models new)", small[0].first, large[0].first),
        ("listing, steady tick (1 new key)", small[0].steady, large[0].steady),
        ("queue, first tick = reconciliation", small[1].first, large[1].first),
        ("queue, steady tick (1 new key)", small[1].steady, large[1].steady),
    ]
    for label, at_1k, at_10k in rows:
        print(f"{label}: 1,000 keys {at_1k:.3f}s, 10,000 keys {at_10k:.3f}s, ratio 10k/1k = {at_10k / at_1k:.2f}")
    ratio = large[1].steady / small[1].steady
    print(f"goal: queue steady tick 10k/1k <= 2: {ratio:.2f} -> {'met' if ratio <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
