"""What a person judges an evaluation by: the scores table, the grid, scores.json and the two checks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import dagster as dg
from PIL import Image

from modelcrew_assets.checkpoint_evaluations.grid import GridRow, grid_image
from modelcrew_assets.checkpoint_evaluations.selection import Selection, StepScores, Thresholds
from modelcrew_assets.handoffs import Checkpoint, CheckpointScore
from modelcrew_assets.imaging import ImageInputError, decode_image
from modelcrew_assets.object_store import Storage
from modelcrew_assets.worker.messages import SampleScore

IDENTITY_CHECK = "best_checkpoint_identity_above_threshold"
MEMORIZATION_CHECK = "best_checkpoint_not_memorizing"


@dataclass(frozen=True)
class ScoredCheckpoint:
    checkpoint: Checkpoint
    scores: StepScores
    memorization_max: float
    sample_keys: tuple[str, ...]  # in grid column order
    samples: tuple[SampleScore, ...] = ()  # per-sample details from the worker

    def handoff(self, thresholds: Thresholds) -> CheckpointScore:
        s = self.scores
        return CheckpointScore(
            step=s.step,
            identity=s.identity,
            face_detection_rate=s.face_detection_rate,
            memorization=s.memorization,
            diversity=round(1.0 - max(0.0, s.cross_prompt_similarity), 4),
            cross_prompt_similarity=s.cross_prompt_similarity,
            memorization_max=self.memorization_max,
            verdict=s.verdict(thresholds),
        )


def scores_table(scored: Sequence[ScoredCheckpoint], thresholds: Thresholds, chosen_step: int) -> dg.TableMetadataValue:
    columns = [
        dg.TableColumn("step", "int"),
        dg.TableColumn("identity", "float", description=f"mean face similarity; threshold {thresholds.identity}"),
        dg.TableColumn("face_detection_rate", "float"),
        dg.TableColumn("memorization", "float", description=f"nearest training photo; limit {thresholds.memorization}"),
        dg.TableColumn("cross_prompt_similarity", "float", description=f"limit {thresholds.cross_prompt}"),
        dg.TableColumn("verdict", "string"),
        dg.TableColumn("chosen", "bool"),
    ]
    records = [
        dg.TableRecord(
            {
                "step": item.scores.step,
                "identity": item.scores.identity,
                "face_detection_rate": item.scores.face_detection_rate,
                "memorization": item.scores.memorization,
                "cross_prompt_similarity": item.scores.cross_prompt_similarity,
                "verdict": item.scores.verdict(thresholds),
                "chosen": item.scores.step == chosen_step,
            }
        )
        for item in scored
    ]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def build_grid(
    storage: Storage, scored: Sequence[ScoredCheckpoint], columns: Sequence[str], chosen_step: int
) -> Image.Image:
    rows = []
    for item in scored:
        s = item.scores
        rows.append(
            GridRow(
                label=f"step {s.step}",
                note=f"id {s.identity:.2f} mem {s.memorization:.2f}",
                images=[_load(storage, key) for key in item.sample_keys],
                chosen=s.step == chosen_step,
            )
        )
    return grid_image(rows, columns)


def _load(storage: Storage, key: str) -> Image.Image | None:
    try:
        return decode_image(storage.get_bytes(key), key)
    except (KeyError, ImageInputError):
        return None


def scores_json(
    model: str,
    run_id: str,
    lora_run_id: str,
    embedder: str,
    thresholds: Thresholds,
    selection: Selection,
    scored: Sequence[ScoredCheckpoint],
) -> bytes:
    document = {
        "model": model,
        "run_id": run_id,
        "lora_run_id": lora_run_id,
        "embedder": embedder,
        "thresholds": asdict(thresholds),
        "selection": asdict(selection),
        "checkpoints": [
            {
                "step": item.scores.step,
                "key": item.checkpoint.key,
                "sha256": item.checkpoint.sha256,
                **asdict(item.scores),
                "memorization_max": item.memorization_max,
                "verdict": item.scores.verdict(thresholds),
                "sample_keys": list(item.sample_keys),
                "samples": [sample.model_dump() for sample in item.samples],
            }
            for item in scored
        ],
    }
    return json.dumps(document, indent=2).encode()


def check_results(chosen: StepScores, thresholds: Thresholds, embedder: str, manual: bool) -> list[dg.AssetCheckResult]:
    """Both checks block generation when the automatic choice is not good enough; a person's explicit
    `checkpoint_step` is their call, so then a failure only warns."""
    common = {"step": chosen.step, "manual_choice": manual, "embedder": embedder}
    severity = dg.AssetCheckSeverity.WARN if manual else dg.AssetCheckSeverity.ERROR
    return [
        dg.AssetCheckResult(
            check_name=IDENTITY_CHECK,
            severity=severity,
            passed=chosen.identity >= thresholds.identity,
            metadata={
                **common,
                "identity": chosen.identity,
                "threshold": thresholds.identity,
                "face_detection_rate": chosen.face_detection_rate,
            },
        ),  # fmt: skip
        dg.AssetCheckResult(
            check_name=MEMORIZATION_CHECK,
            severity=severity,
            passed=not chosen.memorizing(thresholds),
            metadata={
                **common,
                "memorization": chosen.memorization,
                "memorization_threshold": thresholds.memorization,
                "cross_prompt_similarity": chosen.cross_prompt_similarity,
                "cross_prompt_threshold": thresholds.cross_prompt,
            },
        ),
    ]
