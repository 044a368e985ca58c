"""How a deployment chooses its mode and credentials: environment variables only, read in one place."""

from __future__ import annotations

import os

import dagster as dg

DRY_RUN_ENV = "MODELCREW_DRY_RUN"
GPU_EXECUTOR_ENV = "MODELCREW_GPU_EXECUTOR"  # "runpod" (default) or "local" (a studio's own GPU box)
STORAGE_URL_ENV = "MODELCREW_STORAGE_URL"
VIDEO_PROVIDER_ENV = "MODELCREW_VIDEO_PROVIDER"  # "runway" (default) or "fal" (Kling/Pika via fal's queue)
# S3 event notifications for uploads/ (deploy/s3-upload-events/): the queue the upload sensor drains.
UPLOAD_QUEUE_URL_ENV = "MODELCREW_UPLOAD_QUEUE_URL"
UPLOAD_QUEUE_MAX_MESSAGES_ENV = "MODELCREW_UPLOAD_QUEUE_MAX_MESSAGES"
UPLOAD_QUEUE_VISIBILITY_SECONDS_ENV = "MODELCREW_UPLOAD_QUEUE_VISIBILITY_SECONDS"
UPLOAD_RECONCILE_SECONDS_ENV = "MODELCREW_UPLOAD_RECONCILE_SECONDS"


class MissingCredentialError(RuntimeError):
    """Live mode without the credential a paid service needs; raised before anything is spent."""


def dry_run_from_env() -> bool:
    """Simulated providers only when asked for explicitly (MODELCREW_DRY_RUN=1/true/yes); never implied.
    Read by resources/selection.py alone: nothing else decides between live and simulated."""
    return os.environ.get(DRY_RUN_ENV, "").strip().lower() in ("1", "true", "yes")


def env_if_set(name: str) -> dg.EnvVar | None:
    """Bind a setting to an env var only when it is set, so an unused service does not block every run;
    the resource that needs it raises MissingCredentialError naming the variable."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def require_credential(value: str | None, env_name: str, service: str) -> str:
    if not value:
        raise MissingCredentialError(
            f"{service} needs {env_name} in live mode; set it in the environment, "
            f"or set {DRY_RUN_ENV}=1 to run with simulated providers at no cost"
        )
    return value


def int_from_env(name: str, default: int) -> int:
    """A positive whole-number setting (a limit), or its default when the variable is unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{name}={raw!r} is not a positive whole number; fix or unset it (default {default})")
    return value
