"""Watching the trainer's output folder and uploading each file once it is completely written.

Stored checkpoints and samples are write-once: a file whose key already holds the same bytes is not sent
again, and one whose key holds other bytes (a later attempt that trained that step anew) goes to
`attempts/<attempt>/` beside it, so nothing an earlier attempt stored is ever replaced.
"""

from __future__ import annotations

import json
import os
import re
import threading
import zipfile
from pathlib import Path

from dagster_pipes import PipesContext

from modelcrew_assets.object_store import ObjectStore, file_sha256
from modelcrew_assets.worker.kohya import (
    TRAIN_STATE,
    Recipe,
    checkpoint_name,
    final_name,
    final_state_name,
    state_dir_name,
)
from modelcrew_assets.worker.messages import CheckpointStored, SampleStored, WorkerMessage
from modelcrew_assets.worker.resume import LINEAGE, state_prefix
from modelcrew_assets.worker.safetensors_header import is_complete, read_header

WATCH_ENV = "MODELCREW_WATCH_SECONDS"
_STEP = re.compile(r"-step(\d{8})\.safetensors$")
_STATE_STEP = re.compile(r"-step(\d{8})-state$")
_SAMPLE_STEP = re.compile(r"_(\d{6})_\d{2}_")
_PNG_END = b"IEND\xaeB`\x82"


class Reporter:
    """Pipes calls from the trainer-reading thread and the upload thread, one at a time."""

    def __init__(self, pipes: PipesContext):
        self._pipes = pipes
        self._lock = threading.Lock()

    def log(self, message: str) -> None:
        with self._lock:
            self._pipes.log.info(message)

    def warning(self, message: str) -> None:
        with self._lock:
            self._pipes.log.warning(message)

    def custom(self, message: WorkerMessage) -> None:
        with self._lock:
            self._pipes.report_custom_message(message.model_dump(mode="json"))


def state_is_whole(folder: Path, recipe: Recipe) -> bool:
    """Every file accelerate's save_state writes is there and whole by its format. train_state.json alone
    proves nothing: kohya's pre-save hook writes it before accelerate writes the weights and optimizer."""
    for name in recipe.state_files:
        path = folder / name
        if not path.is_file():
            return False
        if name.endswith(".safetensors"):
            whole = is_complete(path)
        elif name.endswith(".json"):
            whole = _json_complete(path)
        else:  # torch.save's zip archive: its end record is written last
            whole = zipfile.is_zipfile(path)
        if not whole:
            return False
    return True


class Uploader:
    """A file counts as complete when its size is unchanged since the last scan and its format says it
    is whole (safetensors: header + every tensor's bytes; PNG: the IEND trailer; state: state_is_whole)."""

    def __init__(
        self, store: ObjectStore, reporter: Reporter, output_dir: Path, prefix: str, name: str, recipe: Recipe, attempt: str,
        lineage: dict[int, str] | None = None,
    ):  # fmt: skip
        self.store = store
        self.reporter = reporter
        self.output_dir = output_dir
        self.prefix = prefix
        self.name = name
        self.recipe = recipe
        self.attempt = attempt
        self.interval = float(os.environ.get(WATCH_ENV, "2"))
        self.lineage: dict[int, str] = dict(lineage or {})  # step -> key of this training's checkpoints
        self._sizes: dict[Path, int] = {}
        self._done: set[Path] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="checkpoint-uploader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def ignore(self, folder: Path) -> None:
        """A state downloaded for --resume is already stored."""
        self._done.update(p for p in folder.rglob("*") if p.is_file())

    def stop(self) -> None:
        """Stop watching, then upload whatever is complete (the trainer has exited)."""
        self._stop.set()
        self._thread.join()
        self.scan(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.scan()

    def _last_step_is_extra(self) -> bool:
        """kohya's final `<name>.safetensors` / `<name>-state` are the last step's only when that step is
        no save step; otherwise they repeat the step files and are not stored twice."""
        return self.recipe.max_train_steps not in self.recipe.save_steps

    def scan(self, final: bool = False) -> None:
        checkpoints = [
            (int(_STEP.search(p.name).group(1)), p) for p in self.output_dir.glob(f"{self.name}-step*.safetensors")
        ]
        last = self.output_dir / final_name(self.name)
        if self._last_step_is_extra() and last.is_file():
            checkpoints.append((self.recipe.max_train_steps, last))
        for step, path in sorted(checkpoints):
            if self._ready(path, final) and is_complete(path):
                self._upload_checkpoint(step, path)
        for path in sorted((self.output_dir / "sample").glob("*.png")):
            if self._ready(path, final) and _png_complete(path):
                self._upload_sample(path)
        if self.recipe.save_state:
            self._scan_states(final)

    def _scan_states(self, final: bool) -> None:
        states = [
            (int(_STATE_STEP.search(p.name).group(1)), p) for p in self.output_dir.glob(f"{self.name}-step*-state")
        ]
        last = self.output_dir / final_state_name(self.name)
        if self._last_step_is_extra() and last.is_dir():
            states.append((self.recipe.max_train_steps, last))
        for step, folder in sorted(states):
            files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
            if not files or all(p in self._done for p in files):
                continue
            ready = [self._ready(p, final) for p in files]  # every file's size must have settled
            # kohya writes a step's weights before its state: wait for them, so the lineage names them.
            if all(ready) and step in self.lineage and state_is_whole(folder, self.recipe):
                self._upload_state(step, folder, files)

    def _ready(self, path: Path, final: bool) -> bool:
        if path in self._done:
            return False
        size = path.stat().st_size
        stable = self._sizes.get(path) == size
        self._sizes[path] = size
        return size > 0 and (stable or final)

    def _claim(self, path: Path, key: str) -> tuple[str, bool]:
        """(key to report, whether to upload): write-once keys, other bytes kept apart per attempt."""
        try:
            stored = self.store.content_sha256(key)
        except KeyError:
            return key, True
        if stored == file_sha256(path):
            return key, False
        relative = key[len(self.prefix) :]
        apart = f"{self.prefix}attempts/{self.attempt}/{relative}"
        self.reporter.warning(
            f"{key} already holds an earlier attempt's file with other bytes; keeping it and storing this "
            f"attempt's as {apart}"
        )
        return apart, True

    def _upload(self, path: Path, key: str, content_type: str = "application/octet-stream") -> tuple[str, int]:
        put = self.store.put_file(key, path, content_type)
        self._done.add(path)
        return put.sha256, put.size

    def _upload_checkpoint(self, step: int, path: Path) -> None:
        key, send = self._claim(path, self.prefix + checkpoint_name(self.name, step))
        metadata = {k: v for k, v in read_header(path).metadata.items() if k.startswith("ss_")}
        if send:
            digest, size = self._upload(path, key)
        else:
            digest, size = file_sha256(path), path.stat().st_size
            self._done.add(path)
        self.lineage[step] = key
        self.reporter.custom(CheckpointStored(step=step, key=key, sha256=digest, size=size, metadata=metadata))
        verb = "uploaded" if send else "already stored"
        self.reporter.log(f"{verb} checkpoint step {step} ({size / 1e6:.1f} MB) at {key} (from {path.name})")

    def _upload_sample(self, path: Path) -> None:
        match = _SAMPLE_STEP.search(path.name)
        key, send = self._claim(path, self.prefix + "samples/" + path.name)
        if send:
            self._upload(path, key, "image/png")
        else:
            self._done.add(path)
        self.reporter.custom(SampleStored(step=int(match.group(1)) if match else None, key=key))

    def _upload_state(self, step: int, folder: Path, files: list[Path]) -> None:
        target = state_prefix(self.prefix) + state_dir_name(self.name, step) + "/"
        if self.store.exists(target + TRAIN_STATE):
            self._done.update(files)  # a whole state for this step is stored already (write-once)
            return
        lineage = folder / LINEAGE
        lineage.write_text(json.dumps({str(s): k for s, k in sorted(self.lineage.items()) if s <= step}))
        # train_state.json goes last: its presence in storage marks the stored state as whole.
        for path in sorted([*files, lineage], key=lambda p: p.name == TRAIN_STATE):
            self._upload(path, target + path.relative_to(folder).as_posix())
        self.reporter.log(f"uploaded kohya state at step {step} to {target}")


def _png_complete(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - len(_PNG_END)))
        return handle.read() == _PNG_END


def _json_complete(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True
