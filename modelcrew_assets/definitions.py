"""Everything Dagster loads: each stage contributes its own Definitions; resources come from the env."""

import dagster as dg

from modelcrew_assets import (
    alerts,
    captions,
    checkpoint_evaluations,
    generated_batches,
    gpu_sweeper,
    intake,
    kohya_dataset,
    lora_checkpoints,
    platform_exports,
    swapped_faces,
)
from modelcrew_assets.resources.alert_webhook import AlertWebhookResource
from modelcrew_assets.resources.c2pa_signing import CERT_ENV, KEY_ENV, TIMESTAMP_URL_ENV, C2paSigningResource
from modelcrew_assets.resources.captioner import CaptionerResource
from modelcrew_assets.resources.gpu import gpu_executor_from_env
from modelcrew_assets.resources.maxstudio import DEFAULT_BASE_URL as MAXSTUDIO_BASE_URL, MaxStudioResource
from modelcrew_assets.resources.storage import DEFAULT_STORAGE_URL, StorageResource
from modelcrew_assets.settings import STORAGE_URL_ENV, dry_run_from_env, env_if_set

resources = {
    "storage": StorageResource(url=env_if_set(STORAGE_URL_ENV) or DEFAULT_STORAGE_URL, region=env_if_set("AWS_REGION")),
    "alert_webhook": AlertWebhookResource(
        webhook_url=env_if_set("MODELCREW_ALERT_WEBHOOK_URL"),
        ui_base_url=env_if_set("MODELCREW_UI_BASE_URL") or "http://127.0.0.1:3000",
    ),
    "c2pa": C2paSigningResource(
        cert_chain_pem=env_if_set(CERT_ENV),
        private_key_pem=env_if_set(KEY_ENV),
        timestamp_url=env_if_set(TIMESTAMP_URL_ENV),
    ),
    "maxstudio": MaxStudioResource(
        api_key=env_if_set("MAXSTUDIO_API_KEY"),
        base_url=env_if_set("MAXSTUDIO_BASE_URL") or MAXSTUDIO_BASE_URL,
        dry_run=dry_run_from_env(),
    ),
    "captioner": CaptionerResource(
        base_url=env_if_set("CAPTION_API_BASE_URL"),
        api_key=env_if_set("CAPTION_API_KEY"),
        model=env_if_set("CAPTION_MODEL"),
        token_parameter=env_if_set("CAPTION_TOKEN_PARAMETER") or "max_tokens",
        dry_run=dry_run_from_env(),
    ),
    "gpu": gpu_executor_from_env(),
}

defs = dg.Definitions.merge(
    intake.defs,
    alerts.defs,
    platform_exports.defs,
    swapped_faces.defs,
    captions.defs,
    kohya_dataset.defs,
    lora_checkpoints.defs,
    checkpoint_evaluations.defs,
    generated_batches.defs,
    gpu_sweeper.defs,
    dg.Definitions(resources=resources),
)
