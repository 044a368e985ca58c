"""GPU executors: one interface (`GpuExecutorResource.run`), RunPod pods and local-process backends."""

import os

from modelcrew_assets.resources.gpu.executor import (
    GpuBudgetExceededError,
    GpuExecutorResource,
    WorkerFailedError,
    WorkerLostError,
    WorkerRun,
)
from modelcrew_assets.resources.gpu.local import LocalGpuResource
from modelcrew_assets.resources.gpu.runpod_pods import NoGpuCapacityError, PodTerminationError, RunPodPodsResource
from modelcrew_assets.settings import dry_run_from_env, env_if_set

EXECUTOR_ENV = "MODELCREW_GPU_EXECUTOR"  # "runpod" (default) or "local" (a studio's own GPU box)


def gpu_executor_from_env() -> GpuExecutorResource:
    """Dry-run: the local executor with the stand-in trainer. Live: RunPod pods, or the local box."""
    if dry_run_from_env():
        return LocalGpuResource(dry_run=True)
    if os.environ.get(EXECUTOR_ENV, "").strip().lower() == "local":
        return LocalGpuResource(trainer_launch=env_if_set("MODELCREW_TRAINER_LAUNCH"))
    return RunPodPodsResource(
        api_key=env_if_set("RUNPOD_API_KEY"),
        graphql_url=env_if_set("RUNPOD_GRAPHQL_URL") or "https://api.runpod.io/graphql",
        image=env_if_set("MODELCREW_WORKER_IMAGE") or "modelcrew-worker:latest",
    )

__all__ = [
    "GpuBudgetExceededError",
    "GpuExecutorResource",
    "LocalGpuResource",
    "NoGpuCapacityError",
    "PodTerminationError",
    "RunPodPodsResource",
    "WorkerFailedError",
    "WorkerLostError",
    "WorkerRun",
    "gpu_executor_from_env",
]
