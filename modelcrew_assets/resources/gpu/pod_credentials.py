"""Short-lived S3 credentials for a RunPod pod, reaching only its run's prefixes.

A pod runs at a third party, so it never gets the orchestrator's keys. Before a pod is created the
orchestrator calls STS AssumeRole on the pod role (MODELCREW_POD_ROLE_ARN) with a session policy: the
session may do only what both the role's policies and the session policy allow, for as long as the run's
time budget (plus the time to hand back its last messages). STS rather than presigned URLs because the
worker writes objects whose names are not known when the pod starts (checkpoints at whatever steps
kohya saves, samples, state folders, Pipes message chunks 1.json, 2.json, ...), resumes by listing what an
earlier attempt stored, and uploads large checkpoints in multipart parts: presigned URLs would need every
name, every part and a listing proxy up front.

The scope (keys below the storage prefix):
- read: the model's face photos, its kohya datasets, LoRA checkpoints and swapped faces (what the GPU
  commands read), plus everything it may write;
- write: the run's output prefix (extras `output_prefix`, or the folder of every job's `output_key`) and
  `pipes/<Dagster run id>/`, where the Pipes context and message objects live;
- list the bucket: S3 answers a HEAD of a missing key with 404 only to a caller that may list the bucket
  (403 otherwise), and the worker's write-once check and restarted-container check rely on that 404. It
  reveals key names, never contents; keep the bucket for this platform alone.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from modelcrew_assets import asset_names
from modelcrew_assets.storage_keys import asset_prefix, face_prefix

POD_ROLE_ARN_ENV = "MODELCREW_POD_ROLE_ARN"
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# What STS allows for AssumeRole's DurationSeconds (the role's MaxSessionDuration may allow less).
STS_MIN_SECONDS = 900
STS_MAX_SECONDS = 43_200
SESSION_POLICY_MAX_CHARS = 2048  # STS refuses longer plaintext session policies (PackedPolicyTooLarge)
MARGIN_SECONDS = 600  # uploads still in flight when the budget runs out, clock skew
GPU_INPUT_ASSETS = (asset_names.KOHYA_DATASET, asset_names.LORA_CHECKPOINTS, asset_names.SWAPPED_FACES)
_WRITE_ACTIONS = ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"]


class PodCredentialError(RuntimeError):
    """No scoped credentials could be made for a pod; raised before the pod exists."""


def pipes_prefix(storage_prefix: str, run_id: str) -> str:
    """Where a run's Pipes context and message objects live: under the storage prefix, one folder a run."""
    return f"{storage_prefix}pipes/{run_id}/"


@dataclass(frozen=True)
class PodScope:
    """Full key prefixes (storage prefix included) in one bucket."""

    bucket: str
    reads: tuple[str, ...]  # read only
    writes: tuple[str, ...]  # read and write

    def session_policy(self) -> str:
        objects = f"arn:aws:s3:::{self.bucket}/"
        statements = [
            {"Effect": "Allow", "Action": _WRITE_ACTIONS, "Resource": [objects + p + "*" for p in self.writes]},
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{self.bucket}"},
        ]
        if self.reads:  # IAM refuses a statement with no resource
            statements.append(
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": [objects + p + "*" for p in self.reads]}
            )
        document = {"Version": "2012-10-17", "Statement": statements}
        text = json.dumps(document, separators=(",", ":"))
        if len(text) > SESSION_POLICY_MAX_CHARS:
            raise PodCredentialError(
                f"the pod's session policy is {len(text)} characters, over STS's {SESSION_POLICY_MAX_CHARS}: "
                f"shorten the storage prefix of bucket {self.bucket!r}"
            )
        return text


def run_scope(
    bucket: str, storage_prefix: str, model: str | None, extras: Mapping[str, Any], run_pipes_prefix: str
) -> PodScope:
    """What one run's pod may read and write; `model` is the partition key (None for unpartitioned work)."""
    outputs = _output_prefixes(extras)
    if model is not None:
        for output in outputs:
            if not output.startswith(f"models/{model}/"):
                raise PodCredentialError(
                    f"output prefix {output!r} is outside models/{model}/: a pod writes only its own model's outputs"
                )
    inputs = [face_prefix(model), *(asset_prefix(model, asset) for asset in GPU_INPUT_ASSETS)] if model else []
    writes = tuple(storage_prefix + p for p in outputs) + (run_pipes_prefix,)
    return PodScope(bucket, tuple(storage_prefix + p for p in inputs), writes)


def _output_prefixes(extras: Mapping[str, Any]) -> list[str]:
    if extras.get("output_prefix"):
        return [str(extras["output_prefix"])]
    keys = [job["output_key"] for job in extras.get("jobs") or () if isinstance(job, Mapping) and job.get("output_key")]
    if not keys:
        return []
    return [posixpath.commonpath([posixpath.dirname(key) for key in keys]) + "/"]


def credential_seconds(run_seconds: float) -> int:
    """DurationSeconds for a run that may last `run_seconds`: within what STS allows, or an error."""
    seconds = max(STS_MIN_SECONDS, int(run_seconds) + MARGIN_SECONDS)
    if seconds > STS_MAX_SECONDS:
        raise PodCredentialError(
            f"the run's time budget ({run_seconds / 60:.0f} min) is longer than the {STS_MAX_SECONDS // 3600} h "
            "STS credentials can last: lower max_runtime_minutes (or max_train_steps)"
        )
    return seconds


def assume_pod_role(role_arn: str, scope: PodScope, seconds: int, run_id: str, region: str | None) -> dict[str, str]:
    """The pod's AWS_* credential env: a role session restricted by the scope's session policy."""
    sts = boto3.client("sts", region_name=region)
    try:
        answer = sts.assume_role(
            RoleArn=role_arn,
            RoleSessionName=f"modelcrew-{run_id}"[:64],
            Policy=scope.session_policy(),
            DurationSeconds=seconds,
        )
    except (ClientError, BotoCoreError) as error:
        raise PodCredentialError(
            f"STS AssumeRole on the pod role ({POD_ROLE_ARN_ENV}) for {seconds} s failed: {error}. The "
            f"orchestrator needs sts:AssumeRole on it, the role's trust policy must allow the orchestrator, and "
            f"its MaxSessionDuration must be at least {seconds} s (role chaining caps sessions at 1 h)"
        ) from None
    credentials = answer["Credentials"]
    return dict(
        zip(
            CREDENTIAL_ENV,
            (credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]),
            strict=True,
        )
    )
