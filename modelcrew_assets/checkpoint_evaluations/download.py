"""A trained LoRA as a file a person takes into ComfyUI or A1111: `<model>-<step>.safetensors`, checked against
the sha256 recorded at upload, with a sidecar text giving the trigger word and the suggested weight."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelcrew_assets.handoffs import (
    Checkpoint,
    CheckpointEvaluations,
    LoraCheckpoints,
    MissingUpstreamError,
    read_index,
    read_model_spec,
)
from modelcrew_assets.object_store import Storage


class CheckpointNotFoundError(ValueError):
    """No checkpoint matches what was asked for, or its stored file changed; the message says what to do."""


@dataclass(frozen=True)
class DownloadedLora:
    weights: Path
    sidecar: Path
    step: int
    chosen: bool  # the checkpoint checkpoint_evaluations chose, not a --step override
    dry_run: bool  # a stand-in file from a dry run, not weights a generator can load


def download_checkpoint(storage: Storage, model: str, destination: Path, step: int | None = None) -> DownloadedLora:
    """Write the chosen checkpoint (or the one at `step`) and its sidecar into `destination`."""
    trained = read_index(storage, model, LoraCheckpoints)
    checkpoint = _chosen(storage, model, trained) if step is None else _at_step(model, trained, step)
    data = storage.get_bytes(checkpoint.key)
    digest = hashlib.sha256(data).hexdigest()
    if digest != checkpoint.sha256:
        raise CheckpointNotFoundError(
            f"{checkpoint.key}: the stored file's sha256 {digest[:12]}... is not the {checkpoint.sha256[:12]}... "
            "recorded when it was uploaded; the file changed in storage, so re-run lora_checkpoints"
        )
    destination.mkdir(parents=True, exist_ok=True)
    stem = f"{model}-{checkpoint.step}"
    weights = _write_atomically(destination / f"{stem}.safetensors", data)
    spec = read_model_spec(storage, model)
    lines = [
        f"trigger word: {spec.trigger}",
        f"class word: {spec.model.class_word}",
        f"suggested LoRA weight: {spec.generation.lora_weight}",
        f"base model: {trained.base_model}",
        f"training step: {checkpoint.step} of run {trained.run_id}",
        f"sha256: {checkpoint.sha256}",
        f"example prompt: {spec.trigger}, close-up portrait of a {spec.model.class_word}, natural light",
    ]
    if trained.dry_run:
        lines.insert(0, "DRY RUN: a stand-in file from a simulated training run; no generator can load it")
    sidecar = _write_atomically(destination / f"{stem}.txt", ("\n".join(lines) + "\n").encode())
    return DownloadedLora(weights, sidecar, checkpoint.step, step is None, trained.dry_run)


def _chosen(storage: Storage, model: str, trained: LoraCheckpoints) -> Checkpoint:
    try:
        evaluations = read_index(storage, model, CheckpointEvaluations)
    except MissingUpstreamError:
        raise CheckpointNotFoundError(
            f"no checkpoint of {model!r} has been chosen yet (checkpoint_evaluations has not run); "
            f"materialize it, or give --step N (trained steps: {_steps(trained)})"
        ) from None
    if evaluations.lora_run_id and evaluations.lora_run_id != trained.run_id:
        raise CheckpointNotFoundError(
            f"{model!r} was trained again (run {trained.run_id}) after checkpoint_evaluations chose from run "
            f"{evaluations.lora_run_id}; re-run checkpoint_evaluations, or give --step N (steps: {_steps(trained)})"
        )
    return evaluations.chosen


def _at_step(model: str, trained: LoraCheckpoints, step: int) -> Checkpoint:
    for checkpoint in trained.checkpoints:
        if checkpoint.step == step:
            return checkpoint
    raise CheckpointNotFoundError(f"{model!r} has no checkpoint at step {step}; trained steps: {_steps(trained)}")


def _steps(trained: LoraCheckpoints) -> str:
    return ", ".join(str(checkpoint.step) for checkpoint in trained.checkpoints) or "none"


def _write_atomically(path: Path, data: bytes) -> Path:
    """Temp file + rename, so an interrupted download never leaves a truncated .safetensors to load."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
