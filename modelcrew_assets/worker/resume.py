"""Finding the kohya state a previous attempt stored, and the checkpoints of the training it belongs to.

A stored state counts when its train_state.json is in storage (the uploader sends it last) and every
other file accelerate writes is there too. Each stored state carries `checkpoints.json`: the step -> key
of the checkpoints of the training that produced it, so a resumed run lists those and no other attempt's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from modelcrew_assets.object_store import ObjectStore
from modelcrew_assets.worker.kohya import TRAIN_STATE, Recipe, state_dir_name

LINEAGE = "checkpoints.json"
_STATE_STEP = re.compile(r"-step(\d{8})-state/")


@dataclass(frozen=True)
class StoredState:
    step: int
    folder: Path | None  # downloaded for --resume; None when training had already finished
    checkpoints: dict[int, str] = field(default_factory=dict)  # step -> key, from the state's lineage

    @property
    def lineage_known(self) -> bool:
        return bool(self.checkpoints)


def state_prefix(prefix: str) -> str:
    return prefix + "state/"


def whole_stored_steps(keys: list[str], prefix: str, name: str, recipe: Recipe) -> list[int]:
    """Steps whose stored state holds train_state.json and every other file accelerate writes, newest first."""
    steps = {int(m.group(1)) for key in keys if key.endswith("/" + TRAIN_STATE) and (m := _STATE_STEP.search(key))}
    present = set(keys)
    whole = []
    for step in steps:
        folder = state_prefix(prefix) + state_dir_name(name, step) + "/"
        if all(folder + file in present for file in recipe.state_files):
            whole.append(step)
    return sorted(whole, reverse=True)


def find_stored_state(
    store: ObjectStore, prefix: str, name: str, recipe: Recipe, output_dir: Path
) -> StoredState | None:
    """The newest whole state; downloaded into output_dir unless it is already at max_train_steps, which
    kohya cannot resume (it asserts max_train_steps > initial step): that training has finished."""
    keys = [item.key for item in store.list(state_prefix(prefix))]
    steps = whole_stored_steps(keys, prefix, name, recipe)
    if not steps:
        return None
    step = steps[0]
    folder_key = state_prefix(prefix) + state_dir_name(name, step) + "/"
    lineage = {}
    if folder_key + LINEAGE in keys:
        lineage = {int(s): key for s, key in json.loads(store.get_bytes(folder_key + LINEAGE)).items()}
    if step >= recipe.max_train_steps:
        return StoredState(step=step, folder=None, checkpoints=lineage)
    local = output_dir / state_dir_name(name, step)
    for key in keys:
        if key.startswith(folder_key) and not key.endswith("/" + LINEAGE):
            store.download(key, local / key[len(folder_key) :])
    return StoredState(step=step, folder=local, checkpoints=lineage)
