"""What the cancel tests run out of process (`dagster asset materialize -f`, a gRPC code server):
lora_checkpoints on the fake RunPod, whose address and storage come from the environment, or with
MODELCREW_GPU_EXECUTOR=local on the local executor as a deployment builds it (resources/selection.py)."""

import os

import dagster as dg

from modelcrew_assets.lora_checkpoints.assets import lora_checkpoints
from modelcrew_assets.resources.gpu import RunPodPodsResource
from modelcrew_assets.resources.selection import resources_from_env
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.settings import GPU_EXECUTOR_ENV
from modelcrew_assets_tests.fakes.aws_env import TEST_REGION

if os.environ.get(GPU_EXECUTOR_ENV) == "local":
    gpu = resources_from_env()["gpu"]
else:
    gpu = RunPodPodsResource(
        api_key=dg.EnvVar("RUNPOD_API_KEY"), graphql_url=os.environ.get("RUNPOD_GRAPHQL_URL", ""),
        gpu_types=["NVIDIA GeForce RTX 4090"], poll_seconds=0.2, pipes_poll_seconds=0.2, pipes_flush_seconds=1,
        max_runtime_minutes=5, liveness_tag_seconds=0.5, closing_grace_seconds=1, heartbeat_seconds=1,
    )  # fmt: skip

defs = dg.Definitions(
    assets=[lora_checkpoints],
    resources={
        "storage": StorageResource(
            url=os.environ.get("MODELCREW_STORAGE_URL", "file:///nonexistent"), region=TEST_REGION
        ),
        "gpu": gpu,
    },
)
