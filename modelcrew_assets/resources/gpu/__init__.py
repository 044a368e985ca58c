"""GPU executors: one interface (`GpuExecutorResource.run`), RunPod pods and local-process backends, and
the simulated (stand-in) executor; which one a deployment binds is chosen in resources/selection.py."""

from modelcrew_assets.resources.gpu.executor import (
    GpuBudgetExceededError,
    GpuExecutorResource,
    WorkerFailedError,
    WorkerLostError,
    WorkerRun,
)
from modelcrew_assets.resources.gpu.local import LocalGpuResource
from modelcrew_assets.resources.gpu.runpod_pods import NoGpuCapacityError, PodTerminationError, RunPodPodsResource
from modelcrew_assets.resources.gpu.stand_in import SimulatedGpuResource, StandInSoftware

__all__ = [
    "GpuBudgetExceededError",
    "GpuExecutorResource",
    "LocalGpuResource",
    "NoGpuCapacityError",
    "PodTerminationError",
    "RunPodPodsResource",
    "SimulatedGpuResource",
    "StandInSoftware",
    "WorkerFailedError",
    "WorkerLostError",
    "WorkerRun",
]
