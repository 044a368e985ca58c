"""Which implementation of each outside service a deployment binds, decided once, here, from the environment.

Every outside service is an interface (an abstract resource the assets annotate) with a live and a simulated
implementation. MODELCREW_DRY_RUN=1 binds the simulated ones; nothing else in the package reads it, and no
asset or stage branches on it: the simulated providers label what they make (`dry_run: true`).
"""

from __future__ import annotations

import os

import dagster as dg

from modelcrew_assets.generated_reels.providers import VideoServiceResource
from modelcrew_assets.generated_reels.simulated import SimulatedVideoResource
from modelcrew_assets.post_metrics.provider import MetricsServiceResource
from modelcrew_assets.post_metrics.simulated import SimulatedMetricsResource
from modelcrew_assets.resources.alert_webhook import AlertWebhookResource
from modelcrew_assets.resources.buffer import API_KEY_ENV as BUFFER_API_KEY_ENV
from modelcrew_assets.resources.buffer import DEFAULT_API_URL as BUFFER_API_URL
from modelcrew_assets.resources.buffer import PUBLIC_MEDIA_ENV, BufferResource
from modelcrew_assets.resources.buffer_metrics import BufferMetricsResource
from modelcrew_assets.resources.c2pa_signing import CERT_ENV, KEY_ENV, TIMESTAMP_URL_ENV, C2paSigningResource
from modelcrew_assets.resources.captioner import CaptionerResource, CaptionServiceResource, SimulatedCaptionerResource
from modelcrew_assets.resources.fal_video import API_KEY_ENV as FAL_KEY_ENV
from modelcrew_assets.resources.fal_video import DEFAULT_QUEUE_URL as FAL_QUEUE_URL
from modelcrew_assets.resources.fal_video import FalVideoResource
from modelcrew_assets.resources.gpu import (
    GpuExecutorResource,
    LocalGpuResource,
    RunPodPodsResource,
    SimulatedGpuResource,
)
from modelcrew_assets.resources.instagram_insights import DEFAULT_GRAPH_URL as INSTAGRAM_GRAPH_URL
from modelcrew_assets.resources.maxstudio import DEFAULT_BASE_URL as MAXSTUDIO_BASE_URL
from modelcrew_assets.resources.maxstudio import MaxStudioResource
from modelcrew_assets.resources.runway import API_SECRET_ENV as RUNWAY_SECRET_ENV
from modelcrew_assets.resources.runway import DEFAULT_BASE_URL as RUNWAY_BASE_URL
from modelcrew_assets.resources.runway import RunwayResource
from modelcrew_assets.resources.storage import DEFAULT_STORAGE_URL, StorageResource
from modelcrew_assets.scheduled_posts.posting import PostingServiceResource
from modelcrew_assets.scheduled_posts.simulated import SimulatedPostingResource
from modelcrew_assets.settings import (
    GPU_EXECUTOR_ENV,
    STORAGE_URL_ENV,
    VIDEO_PROVIDER_ENV,
    dry_run_from_env,
    env_if_set,
)
from modelcrew_assets.swapped_faces.providers import SwapServiceResource
from modelcrew_assets.swapped_faces.simulated import SimulatedSwapResource


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """Every resource the definitions bind, by key; the services live or simulated as the environment says."""
    simulated = dry_run_from_env()
    return {
        "storage": StorageResource(
            url=env_if_set(STORAGE_URL_ENV) or DEFAULT_STORAGE_URL, region=env_if_set("AWS_REGION")
        ),
        "alert_webhook": AlertWebhookResource(
            webhook_url=env_if_set("MODELCREW_ALERT_WEBHOOK_URL"),
            ui_base_url=env_if_set("MODELCREW_UI_BASE_URL") or "http://127.0.0.1:3000",
        ),
        "c2pa": C2paSigningResource(
            cert_chain_pem=env_if_set(CERT_ENV),
            private_key_pem=env_if_set(KEY_ENV),
            timestamp_url=env_if_set(TIMESTAMP_URL_ENV),
        ),
        "face_swaps": SimulatedSwapResource() if simulated else _maxstudio(),
        "captioner": SimulatedCaptionerResource() if simulated else _captioner(),
        "gpu": _gpu_executor(simulated),
        "posting": _posting(simulated),
        "metrics": SimulatedMetricsResource() if simulated else _metrics(),
        "video": _video(simulated),
    }


def _gpu_executor(simulated: bool) -> GpuExecutorResource:
    """Simulated: the stand-in trainer and generator, locally. Live: RunPod pods, or the studio's own GPU box
    with MODELCREW_GPU_EXECUTOR=local."""
    if simulated:
        return SimulatedGpuResource()
    if os.environ.get(GPU_EXECUTOR_ENV, "").strip().lower() == "local":
        return LocalGpuResource(trainer_launch=env_if_set("MODELCREW_TRAINER_LAUNCH"))
    return RunPodPodsResource(
        api_key=env_if_set("RUNPOD_API_KEY"),
        graphql_url=env_if_set("RUNPOD_GRAPHQL_URL") or "https://api.runpod.io/graphql",
        image=env_if_set("MODELCREW_WORKER_IMAGE") or "modelcrew-worker:latest",
    )


def _maxstudio() -> SwapServiceResource:
    return MaxStudioResource(
        api_key=env_if_set("MAXSTUDIO_API_KEY"), base_url=env_if_set("MAXSTUDIO_BASE_URL") or MAXSTUDIO_BASE_URL
    )


def _captioner() -> CaptionServiceResource:
    return CaptionerResource(
        base_url=env_if_set("CAPTION_API_BASE_URL"),
        api_key=env_if_set("CAPTION_API_KEY"),
        model=env_if_set("CAPTION_MODEL"),
        token_parameter=env_if_set("CAPTION_TOKEN_PARAMETER") or "max_tokens",
    )


def _metrics() -> MetricsServiceResource:
    """Live: Buffer's post metrics with the posting key, plus Instagram insights where a model has a token."""
    return BufferMetricsResource(
        api_key=env_if_set(BUFFER_API_KEY_ENV),
        api_url=env_if_set("BUFFER_API_URL") or BUFFER_API_URL,
        instagram_graph_url=env_if_set("INSTAGRAM_GRAPH_URL") or INSTAGRAM_GRAPH_URL,
    )


def _posting(simulated: bool) -> PostingServiceResource:
    """Simulated: posts recorded in storage. Live: Buffer, with exports served from the public media base URL."""
    if simulated:
        return SimulatedPostingResource(public_media_base_url=env_if_set(PUBLIC_MEDIA_ENV))
    return BufferResource(
        api_key=env_if_set(BUFFER_API_KEY_ENV),
        api_url=env_if_set("BUFFER_API_URL") or BUFFER_API_URL,
        public_media_base_url=env_if_set(PUBLIC_MEDIA_ENV),
    )


def _video(simulated: bool) -> VideoServiceResource:
    """Simulated: slow zooms made locally. Live: Runway, or fal's queue with MODELCREW_VIDEO_PROVIDER=fal."""
    if simulated:
        return SimulatedVideoResource()
    if os.environ.get(VIDEO_PROVIDER_ENV, "").strip().lower() == "fal":
        return FalVideoResource(api_key=env_if_set(FAL_KEY_ENV), queue_url=env_if_set("FAL_QUEUE_URL") or FAL_QUEUE_URL)
    return RunwayResource(
        api_secret=env_if_set(RUNWAY_SECRET_ENV), base_url=env_if_set("RUNWAYML_BASE_URL") or RUNWAY_BASE_URL
    )
