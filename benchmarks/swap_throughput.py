"""Swap throughput: 100 targets against the fake MaxStudio (1.0 s per job) with max_concurrency 8, through
the same flow the swapped_faces asset runs (presigned URLs from moto S3, detect, create, ledger writes,
polls, downloads, result + sidecar writes), with the resource's default settings (poll schedule, retries).
The fake and moto run in their own processes, as the real services would.

Ideal = ceil(100 / 8) rounds x 1.0 s = 13 s. Prints wall / ideal (must be <= 1.25) and the fake's highest
number of simultaneous requests (must be <= 8). A single target swapped alone in the same run is the
measured per-target baseline.
Run: .venv/bin/python benchmarks/swap_throughput.py
"""

import asyncio
import math
import multiprocessing
import multiprocessing.connection
import os
import socket
import subprocess
import sys
import threading
import time

import boto3
import httpx
from PIL import Image
from skimage import data

from modelcrew_assets.intake.upload_scan import group_uploads
from modelcrew_assets.resources.maxstudio import MaxStudioResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import upload_prefix
from modelcrew_assets.swapped_faces.flow import SwapRun, swap_all
from modelcrew_assets.swapped_faces.inputs import SwapOptions, load_inputs
from modelcrew_assets_tests.builders import upload_model
from modelcrew_assets_tests.fakes.aws_env import TEST_REGION, use_test_aws_environment
from modelcrew_assets_tests.fakes.maxstudio import TEST_KEY, FakeMaxStudio

TARGETS = 100
JOB_LATENCY_S = 1.0
CONCURRENCY = 8
MAX_RATIO = 1.25


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str) -> None:
    for _ in range(200):
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def serve_fake(port_out: "multiprocessing.connection.Connection") -> None:
    """The fake provider in its own process, like the real one: its CPU and GIL are not the client's."""
    fake = FakeMaxStudio().start()
    fake.faults.job_latency_s = JOB_LATENCY_S
    port_out.send(fake.base_url)
    threading.Event().wait()


def s3_storage(endpoint: str, bucket: str) -> StorageResource:
    boto3.client("s3", region_name=TEST_REGION, endpoint_url=endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": TEST_REGION}
    )
    return StorageResource(url=f"s3://{bucket}/studio", region=TEST_REGION)


def swap_model(storage: StorageResource, base_url: str, model: str) -> tuple[float, int]:
    """Wall seconds of the swap flow for one model's uploads, and how many targets it swapped."""
    uploads = group_uploads(storage.list(upload_prefix(model))).models[model]
    options = SwapOptions()
    inputs = load_inputs(storage, uploads, options)
    resource = MaxStudioResource(api_key=TEST_KEY, base_url=base_url, max_concurrency=CONCURRENCY)

    async def run() -> list:
        async with resource.swaps(storage, inputs.face) as provider:
            return await swap_all(SwapRun(model, inputs, options, CONCURRENCY), provider, storage)

    started = time.monotonic()
    outcomes = asyncio.run(run())
    return time.monotonic() - started, sum(outcome.succeeded for outcome in outcomes)


def main() -> int:
    use_test_aws_environment()
    endpoint = f"http://127.0.0.1:{free_port()}"
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", endpoint.rsplit(":", 1)[1]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    receive, send = multiprocessing.Pipe(duplex=False)
    fake = multiprocessing.Process(target=serve_fake, args=(send,), daemon=True)
    fake.start()
    try:
        wait_until_up(endpoint)
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
        base_url = receive.recv()
        storage = s3_storage(endpoint, "swap-benchmark")
        astronaut = Image.fromarray(data.astronaut())
        upload_model(storage, astronaut, "single", targets=1)
        upload_model(storage, astronaut, "bench", targets=TARGETS)

        single_s, _ = swap_model(storage, base_url, "single")
        wall_s, swapped = swap_model(storage, base_url, "bench")
        stats = httpx.get(f"{base_url}/_stats").json()
    finally:
        fake.terminate()
        moto.terminate()
        moto.wait()

    ideal_s = math.ceil(TARGETS / CONCURRENCY) * JOB_LATENCY_S
    ratio = wall_s / ideal_s
    print(f"targets={TARGETS} swapped={swapped} jobs_created={stats['jobs_created'] - 1} (plus 1 for the baseline)")
    print(f"single target alone (measured baseline): {single_s:.2f} s")
    print(f"wall={wall_s:.2f} s ideal={ideal_s:.1f} s (ceil({TARGETS}/{CONCURRENCY}) x {JOB_LATENCY_S} s)")
    print(
        f"wall/ideal = {ratio:.3f} (limit {MAX_RATIO}); wall / (rounds x measured single) = "
        f"{wall_s / (math.ceil(TARGETS / CONCURRENCY) * single_s):.3f}"
    )
    print(f"max simultaneous requests at the fake = {stats['max_in_flight']} (limit {CONCURRENCY})")
    ok = ratio <= MAX_RATIO and stats["max_in_flight"] <= CONCURRENCY and swapped == TARGETS
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
