"""`gpu_pod_sweeper`: the worst case of "the pod is always given back". A step ends its own pod on every
ending it lives through; when its process is killed outright (SIGKILL, OOM, a lost machine) the pod keeps
billing. Every tick lists the account's pods, matches each to its Dagster run by the run id in the pod's
name (`modelcrew-<run id>-<suffix>`, set by RunPodPodsResource) and terminates it when the run is
finished (success, failure, canceled), unknown to this instance, or has not seen its worker for
`stale_after_seconds` (the executor refreshes the run's `modelcrew/gpu_alive_at` tag while it waits).
Pods whose name does not carry a run id were not made by this platform and are never touched. No cursor:
each tick reads the current state, so ticks are idempotent.
"""

from __future__ import annotations

import time

import dagster as dg

from modelcrew_assets.resources.gpu import GpuExecutorResource, PodTerminationError, RunPodPodsResource
from modelcrew_assets.resources.gpu.executor import GPU_ALIVE_TAG
from modelcrew_assets.resources.gpu.runpod_pods import run_id_of_pod

SWEEP_INTERVAL_SECONDS = 60
# A STARTED run whose liveness tag is older than this has lost its run worker. Only needed when nothing
# marks the run failed: with the DefaultRunLauncher the code server does that within a second of its run
# worker dying (the pod then goes at the next tick as a finished run's), but run monitoring cannot check
# that launcher's workers (no check_run_worker_health), so a run killed together with its code server, or
# a `dagster asset materialize` killed outright, stays STARTED for ever. A healthy step refreshes the tag
# every 30 s (liveness_tag_seconds) plus one state poll (poll_seconds 10 and the RunPod call), so 180 s
# is six refresh periods: it tolerates a failed tag write and a slow poll, and bounds the waste after such
# a kill to 180 s + one interval (4 minutes with the defaults).
STALE_AFTER_SECONDS = 180


def why_end(run: dg.DagsterRun | None, now: float, stale_after_seconds: float) -> str | None:
    """Why a platform pod should go, or None while its run may still be using it."""
    if run is None:
        return "its run is not in this Dagster instance"
    if run.is_finished:
        return f"its run is {run.status.value}"
    alive = run.tags.get(GPU_ALIVE_TAG)
    if alive is not None and now - float(alive) > stale_after_seconds:
        return f"its run ({run.status.value}) has not seen its worker for {now - float(alive):.0f} s: run worker gone"
    return None


def sweep(
    instance: dg.DagsterInstance, gpu: RunPodPodsResource, log, stale_after_seconds: float
) -> tuple[list[str], int, list[str]]:
    """Terminate the platform's pods that nothing will end; returns (what was done, pods left running,
    terminations that failed). One pod RunPod will not terminate does not keep the others billing."""
    done, kept, failed = [], 0, []
    now = time.time()
    for pod in gpu.account_pods():
        run_id = run_id_of_pod(pod.get("name"))
        if run_id is None:
            continue
        reason = why_end(instance.get_run_by_id(run_id), now, stale_after_seconds)
        if reason is None:
            kept += 1
            continue
        try:
            gpu.terminate_pod(pod["id"])
        except PodTerminationError as error:
            failed.append(f"{error} (to end because {reason})")
            log.error(failed[-1])
            continue
        done.append(f"terminated RunPod pod {pod['id']} ({pod.get('name')}): {reason}")
        log.warning(done[-1])
    return done, kept, failed


def build_gpu_pod_sweeper(
    interval_seconds: int = SWEEP_INTERVAL_SECONDS, stale_after_seconds: float = STALE_AFTER_SECONDS
) -> dg.SensorDefinition:
    @dg.sensor(
        name="gpu_pod_sweeper",
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Terminates RunPod pods whose Dagster run is finished, unknown or no longer alive",
    )
    def gpu_pod_sweeper(context: dg.SensorEvaluationContext, gpu: GpuExecutorResource) -> dg.SkipReason:
        if not isinstance(gpu, RunPodPodsResource):
            return dg.SkipReason(f"the GPU executor is {gpu.backend_name}, not RunPod: no pods to sweep")
        if not gpu.api_key:
            return dg.SkipReason("RUNPOD_API_KEY is not set: no RunPod account to sweep")
        done, kept, failed = sweep(context.instance, gpu, context.log, stale_after_seconds)
        if failed:  # a failed tick shows in the UI; the next one tries again
            raise PodTerminationError("; ".join(failed))
        if not done:
            return dg.SkipReason(f"nothing to sweep ({kept} pod(s) in use)")
        return dg.SkipReason("; ".join([*done, f"{kept} pod(s) still in use"]))

    return gpu_pod_sweeper


gpu_pod_sweeper = build_gpu_pod_sweeper()
