"""The two checks every training run gets, as pure functions over what storage holds."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from modelcrew_assets.handoffs import Checkpoint
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.worker.kohya import Recipe
from modelcrew_assets.worker.safetensors_header import SafetensorsError, parse_header

VALID_SAFETENSORS = "checkpoints_are_valid_safetensors"
EVERY_SAVE_STEP = "every_save_step_has_a_checkpoint"


def safetensors_problems(storage: StorageResource, checkpoint: Checkpoint, recipe: Recipe) -> list[str]:
    """What is wrong with one stored checkpoint: header, size, LoRA tensors, ss_network_dim/alpha."""
    name = checkpoint.key.rsplit("/", 1)[-1]
    data = storage.get_bytes(checkpoint.key)
    try:
        header = parse_header(data)
    except SafetensorsError as error:
        return [f"{name}: {error}"]
    problems = []
    if header.total_size != len(data):
        problems.append(f"{name}: {len(data)} bytes but the header describes {header.total_size}")
    if not any(key.startswith("lora_") for key in header.tensors):
        problems.append(f"{name}: no lora_* tensors")
    dim, alpha = header.metadata.get("ss_network_dim"), header.metadata.get("ss_network_alpha")
    if dim != str(recipe.network_dim):
        problems.append(f"{name}: ss_network_dim is {dim!r}, the recipe says {recipe.network_dim}")
    try:
        alpha_matches = alpha is not None and float(alpha) == float(recipe.network_alpha)
    except ValueError:
        alpha_matches = False
    if not alpha_matches:
        problems.append(f"{name}: ss_network_alpha is {alpha!r}, the recipe says {recipe.network_alpha:g}")
    return problems + _recipe_mismatches(name, header.metadata, recipe)


def _recipe_mismatches(name: str, metadata: dict[str, str], recipe: Recipe) -> list[str]:
    """The options kohya records that must be the recipe's: a trainer that ignored a flag shows here."""
    # ss_optimizer is `<module>.<class>(<args>)`; its class is kohya's name for --optimizer_type.
    optimizer = metadata.get("ss_optimizer", "").split("(", 1)[0].rsplit(".", 1)[-1]
    recorded = {
        "ss_optimizer": (optimizer, recipe.optimizer_type),
        "ss_seed": (metadata.get("ss_seed"), str(recipe.seed)),
        "ss_mixed_precision": (metadata.get("ss_mixed_precision"), recipe.mixed_precision),
    }
    return [
        f"{name}: {key} is {found!r}, the recipe says {wanted!r}"
        for key, (found, wanted) in recorded.items()
        if found != wanted
    ]


def valid_safetensors_result(
    storage: StorageResource, checkpoints: Sequence[Checkpoint], recipe: Recipe
) -> dg.AssetCheckResult:
    problems = [problem for checkpoint in checkpoints for problem in safetensors_problems(storage, checkpoint, recipe)]
    return dg.AssetCheckResult(
        check_name=VALID_SAFETENSORS,
        passed=bool(checkpoints) and not problems,
        metadata={"checked": len(checkpoints), "problems": "\n".join(problems) or "none"},
    )


def every_save_step_result(checkpoints: Sequence[Checkpoint], recipe: Recipe) -> dg.AssetCheckResult:
    """Every save step and the last step (kohya's final weights, stored as that step) has its file."""
    expected = recipe.checkpoint_steps
    missing = sorted(set(expected) - {checkpoint.step for checkpoint in checkpoints})
    return dg.AssetCheckResult(
        check_name=EVERY_SAVE_STEP,
        passed=not missing,
        metadata={"expected_steps": list(expected), "missing_steps": missing},
    )
