"""Time one upload-sensor tick with 1,000 and with 10,000 existing upload keys (moto S3 server).

Two ticks per size: the first sees every model as new (parses each manifest, requests a run each), the
second is the steady state (one model received one more target). Prints the ratio 10k / 1k for both.
Run: .venv/bin/python benchmarks/sensor_tick.py
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import dagster as dg
from moto.server import ThreadedMotoServer

from modelcrew_assets.definitions import defs
from modelcrew_assets.intake.sensors import model_uploads_sensor
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets_tests.builders import manifest_text
from modelcrew_assets_tests.fakes.aws_env import TEST_REGION, use_test_aws_environment

KEYS_PER_MODEL = 100


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
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": storage}, definitions=defs)
    start = time.perf_counter()
    result = model_uploads_sensor(context)
    return time.perf_counter() - start, result


def measure(endpoint: str, total_keys: int) -> tuple[float, float]:
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", region_name=TEST_REGION, endpoint_url=endpoint)
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": TEST_REGION})
    models = populate(client, bucket, total_keys)
    storage = StorageResource(url=f"s3://{bucket}", region=TEST_REGION)
    with dg.instance_for_test() as instance:
        first_seconds, first = timed_tick(instance, storage, None)
        assert len(first.run_requests) == len(models)
        client.put_object(Bucket=bucket, Key=f"uploads/{models[0]}/targets/new.jpg", Body=b"new")
        steady_seconds, steady = timed_tick(instance, storage, first.cursor)
        assert len(steady.run_requests) == 1
    return first_seconds, steady_seconds


def main() -> None:
    use_test_aws_environment()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL_S3"] = f"http://{host}:{port}"
    try:
        small = measure(os.environ["AWS_ENDPOINT_URL_S3"], 1_000)
        large = measure(os.environ["AWS_ENDPOINT_URL_S3"], 10_000)
    finally:
        server.stop()
    for label, index in (("first tick (all models new)", 0), ("steady tick (1 new key)", 1)):
        print(
            f"{label}: 1,000 keys {small[index]:.3f}s, 10,000 keys {large[index]:.3f}s, "
            f"ratio 10k/1k = {large[index] / small[index]:.2f}"
        )


if __name__ == "__main__":
    main()
