"""RunPod pods through RunPod's GraphQL API: create from the worker image, poll, always terminate.

GraphQL (api.runpod.io/graphql: podFindAndDeployOnDemand / pod / podTerminate) rather than REST: REST v1
retires in 2026 and REST v2 is still in beta. Logs reach Dagster through Pipes (the worker forwards the
trainer's output); the API is polled for the pod's state only. Every pod is named after its Dagster run
(`modelcrew-<run id>-<suffix>`), which is how the pod sweeper (gpu_sweeper/) finds pods whose run is gone.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import uuid
from typing import Any, ClassVar

import httpx
from dagster import DagsterExecutionInterruptedError, get_dagster_logger
from pydantic import Field

from modelcrew_assets.resources.gpu.executor import GpuExecutorResource, WorkerHandle, forwarded_env
from modelcrew_assets.resources.gpu.pod_credentials import (
    CREDENTIAL_ENV,
    POD_ROLE_ARN_ENV,
    assume_pod_role,
    credential_seconds,
    pipes_prefix,
    run_scope,
)
from modelcrew_assets.resources.http_api import AmbiguousRequestError, ApiError, JsonApiClient
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.resources.storage_backends import S3Backend
from modelcrew_assets.settings import require_credential

API_KEY_ENV = "RUNPOD_API_KEY"
# RunPod's answers when a GPU type cannot be had right now: try the next type.
NO_CAPACITY = ("no longer any instances available", "does not have the resources to deploy your pod")
POD_NAME_PREFIX = "modelcrew-"
_POD_NAME = re.compile(
    rf"^{POD_NAME_PREFIX}([0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}})-[0-9a-f]{{6}}$"
)
GRAPHQL_URL_ENV = "MODELCREW_RUNPOD_GRAPHQL_URL"  # where the worker sends its own podStop
# Forwarded from the orchestrator's env; its credentials never are (the pod gets a scoped STS session).
AWS_ENV = ("AWS_ENDPOINT_URL_S3",)

DEPLOY = """mutation Deploy($input: PodFindAndDeployOnDemandInput!) {
  podFindAndDeployOnDemand(input: $input) { id costPerHr desiredStatus }
}"""
POD = """query Pod($podId: String!) {
  pod(input: {podId: $podId}) { id desiredStatus lastStatusChange runtime { uptimeInSeconds } }
}"""
TERMINATE = """mutation Terminate($podId: String!) { podTerminate(input: {podId: $podId}) }"""
MY_PODS = """query MyPods { myself { pods { id name desiredStatus } } }"""


def pod_name(run_id: str) -> str:
    """Unique per launch, and carries the whole run id so the sweeper can match it unambiguously."""
    return f"{POD_NAME_PREFIX}{run_id}-{uuid.uuid4().hex[:6]}"


def run_id_of_pod(name: str | None) -> str | None:
    """The Dagster run a pod was made for; None for pods this platform did not create."""
    match = _POD_NAME.match(name or "")
    return match.group(1) if match else None


class NoGpuCapacityError(RuntimeError):
    """None of the configured GPU types could be rented."""


class PodTerminationError(RuntimeError):
    """A pod could not be confirmed terminated: it may still be billing."""


# A hung API must not stall the liveness tag the sweeper reads (refreshed every 30 s, stale at 180 s).
POLL_TIMEOUT_SECONDS = 30


class RunPodGraphQL:
    def __init__(self, url: str, api_key: str):
        self.url = url
        self.api_key = api_key

    def call(
        self, query: str, variables: dict[str, Any], idempotent: bool, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """One GraphQL call with the shared client's retries; `timeout_s` bounds all of it."""
        url = httpx.URL(self.url)
        base = f"{url.scheme}://{url.netloc.decode()}"

        async def send() -> Any:
            async with JsonApiClient(
                "RunPod", base, {"Authorization": f"Bearer {self.api_key}"}, max_concurrency=1
            ) as api:
                body = {"query": query, "variables": variables}
                return await api.call("POST", url.raw_path.decode(), json=body, idempotent=idempotent)

        answer = _run_surfacing_interrupts(asyncio.wait_for(send(), timeout_s))
        if answer.get("errors"):
            message = "; ".join(str(error.get("message")) for error in answer["errors"])
            raise ApiError(f"RunPod GraphQL: {message}")
        return answer.get("data") or {}


def _run_surfacing_interrupts(coroutine: Any) -> Any:
    """A cancel that lands while anyio is connecting arrives wrapped in an exception group; Dagster (and
    the executor's cleanup) must see the interrupt itself to treat the step as cancelled."""
    try:
        return asyncio.run(coroutine)
    except BaseExceptionGroup as group:
        interrupts = group.subgroup(lambda e: isinstance(e, (KeyboardInterrupt, DagsterExecutionInterruptedError)))
        if interrupts is None:
            raise
        while isinstance(interrupts, BaseExceptionGroup):
            interrupts = interrupts.exceptions[0]
        raise interrupts from group


class RunPodPod(WorkerHandle):
    def __init__(self, api: RunPodGraphQL, pod_id: str, gpu_type: str, cost_per_hour: float):
        self.api = api
        self.job_id = pod_id
        self.gpu_type = gpu_type
        self.cost_per_hour = cost_per_hour
        self.last_status: str | None = None
        self.terminated = False
        self.log = get_dagster_logger()

    def exited(self) -> str | None:
        pod = self.api.call(POD, {"podId": self.job_id}, idempotent=True, timeout_s=POLL_TIMEOUT_SECONDS).get("pod")
        status = (pod or {}).get("desiredStatus", "TERMINATED")
        if status != self.last_status:
            uptime = ((pod or {}).get("runtime") or {}).get("uptimeInSeconds")
            self.log.info(f"RunPod pod {self.job_id}: {status}" + (f" (up {uptime} s)" if uptime else ""))
            self.last_status = status
        return f"pod {status.lower()}" if status in ("EXITED", "TERMINATED") else None

    def terminate(self, timeout_s: float | None = None) -> None:
        if self.terminated:
            return
        try:
            self.api.call(TERMINATE, {"podId": self.job_id}, idempotent=True, timeout_s=timeout_s)
        except (ApiError, TimeoutError) as error:
            raise PodTerminationError(
                f"RunPod pod {self.job_id} could not be terminated ({error}); it may still be billing: "
                "terminate it in the RunPod console now"
            ) from error
        self.terminated = True


class RunPodPodsResource(GpuExecutorResource):
    """A RunPod GPU pod per run, from the worker image; Pipes over the studio's S3 bucket."""

    backend_name: ClassVar[str] = "runpod_pod"

    api_key: str | None = Field(default=None, description=f"from {API_KEY_ENV}")
    graphql_url: str = "https://api.runpod.io/graphql"
    image: str = Field(default="modelcrew-worker:latest", description="deploy/worker/Dockerfile, pushed")
    # About an RTX 4090 on demand; once a pod exists, its own costPerHr is what the run reports.
    dollars_per_hour: float = Field(default=0.79, ge=0, description="GPU price for estimates before a pod exists")
    gpu_types: list[str] = Field(
        default=["NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000", "NVIDIA L40S", "NVIDIA A100 80GB PCIe"],
        description="Tried in order until one has capacity",
    )
    cloud_type: str = "SECURE"
    container_disk_gb: int = 60
    volume_gb: int = 0
    volume_mount_path: str = "/workspace"
    network_volume_id: str | None = Field(default=None, description="Holds the base model, if not baked in")
    worker_env: dict[str, str] = Field(default_factory=dict, description="Extra env for the worker")
    pipes_flush_seconds: float = Field(default=10, gt=0, description="How often the worker writes messages")
    pod_role_arn: str | None = Field(
        default_factory=lambda: os.environ.get(POD_ROLE_ARN_ENV) or None,
        description=f"from {POD_ROLE_ARN_ENV}: the role pods get short-lived, run-scoped S3 credentials of",
    )

    def _pipes(self, context, storage: StorageResource, extras, budget_s: float):
        require_credential(self.api_key, API_KEY_ENV, "RunPod")
        backend = storage.backend
        if not isinstance(backend, S3Backend):
            raise ValueError(
                "RunPod pods cannot reach local storage: set MODELCREW_STORAGE_URL=s3://bucket/prefix "
                "(or use the local GPU executor)"
            )
        role_arn = require_credential(self.pod_role_arn, POD_ROLE_ARN_ENV, "RunPod pods' scoped S3 credentials")
        if set(CREDENTIAL_ENV) & set(self.worker_env):
            raise ValueError(f"worker_env must not set {', '.join(CREDENTIAL_ENV)}: pods get scoped credentials")
        run_id = context.run.run_id
        run_prefix = pipes_prefix(backend.prefix, run_id)
        model = context.partition_key if context.has_partition_key else None
        scope = run_scope(backend.bucket, backend.prefix, model, extras, run_prefix)
        region = storage.region or backend.client.meta.region_name
        seconds = credential_seconds(budget_s + self.closing_grace_seconds)
        credentials = assume_pod_role(role_arn, scope, seconds, run_id, region)
        context.log.info(f"pod credentials: a {seconds} s session of {role_arn} for {', '.join(scope.writes)}")
        # Imported here: dagster_aws.pipes loads all of dagster_aws (~1 s), which every step would otherwise pay.
        from modelcrew_assets.resources.gpu.s3_pipes import DrainingS3MessageReader, PipesS3ContextInjector

        injector = PipesS3ContextInjector(bucket=backend.bucket, client=backend.client, key_prefix=run_prefix)
        reader = DrainingS3MessageReader(
            bucket=backend.bucket, client=backend.client, interval=self.pipes_poll_seconds, key_prefix=run_prefix
        )
        env = {
            "MODELCREW_PIPES_TRANSPORT": "s3",
            "MODELCREW_PIPES_FLUSH_SECONDS": f"{self.pipes_flush_seconds:g}",
            "AWS_REGION": region,
            **forwarded_env(AWS_ENV, os.environ),
            **credentials,
            **self.worker_env,
        }
        return injector, reader, env

    def api(self) -> RunPodGraphQL:
        require_credential(self.api_key, API_KEY_ENV, "RunPod")
        return RunPodGraphQL(self.graphql_url, self.api_key or "")

    def account_pods(self) -> list[dict[str, Any]]:
        """Every pod in the account (`myself { pods }`): id, name, desiredStatus."""
        return (self.api().call(MY_PODS, {}, idempotent=True).get("myself") or {}).get("pods") or []

    def terminate_pod(self, pod_id: str, timeout_s: float = 60) -> None:
        RunPodPod(self.api(), pod_id, "", 0).terminate(timeout_s)

    def _launch(self, context, worker_args, env) -> RunPodPod:
        api = self.api()
        name = pod_name(context.run.run_id)
        env = {**env, GRAPHQL_URL_ENV: self.graphql_url}
        base = {
            "cloudType": self.cloud_type,
            "gpuCount": 1,
            "name": name,
            "imageName": self.image,
            "dockerArgs": shlex.join(["python", "-m", "modelcrew_assets.worker", *worker_args]),
            "containerDiskInGb": self.container_disk_gb,
            "volumeInGb": self.volume_gb,
            "volumeMountPath": self.volume_mount_path,
            "env": [{"key": key, "value": value} for key, value in env.items()],
            **({"networkVolumeId": self.network_volume_id} if self.network_volume_id else {}),
        }
        tried = []
        for gpu_type in self.gpu_types:
            try:
                data = api.call(DEPLOY, {"input": {**base, "gpuTypeId": gpu_type}}, idempotent=False)
            except AmbiguousRequestError:
                _terminate_by_name(api, name)
                raise
            except ApiError as error:
                if not any(message in str(error).lower() for message in NO_CAPACITY):
                    raise
                context.log.warning(f"RunPod has no {gpu_type} available ({error}); trying the next GPU type")
                tried.append(gpu_type)
                continue
            pod = data["podFindAndDeployOnDemand"]
            context.log.info(f"RunPod pod {pod['id']} created on {gpu_type} (${pod.get('costPerHr')}/h)")
            return RunPodPod(api, pod["id"], gpu_type, float(pod.get("costPerHr") or 0))
        raise NoGpuCapacityError(
            f"RunPod has none of these GPU types available now: {', '.join(tried)}; add more types to "
            "gpu_types or try again later"
        )


def _terminate_by_name(api: RunPodGraphQL, name: str) -> None:
    """A create whose answer was lost may still have made a pod: find it by its unique name and end it."""
    pods = (api.call(MY_PODS, {}, idempotent=True).get("myself") or {}).get("pods") or []
    for pod in pods:
        if pod.get("name") == name:
            RunPodPod(api, pod["id"], "", 0).terminate()
