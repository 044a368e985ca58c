"""Watching the trainer's output folder and uploading each file once it is completely written."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

from dagster_pipes import PipesContext

from modelcrew_assets.worker.messages import CHECKPOINT, SAMPLE
from modelcrew_assets.worker.safetensors_header import is_complete, read_header

WATCH_ENV = "MODELCREW_WATCH_SECONDS"
_STEP = re.compile(r"-step(\d{8})\.safetensors$")
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

    def custom(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self._pipes.report_custom_message(payload)


class Uploader:
    """A file counts as complete when its size is unchanged since the last scan and its format says it
    is whole (safetensors: header + every tensor's bytes; PNG: the IEND trailer; state: train_state.json)."""

    def __init__(self, store, reporter: Reporter, output_dir: Path, prefix: str, name: str, save_state: bool):
        self.store = store
        self.reporter = reporter
        self.output_dir = output_dir
        self.prefix = prefix
        self.name = name
        self.save_state = save_state
        self.interval = float(os.environ.get(WATCH_ENV, "2"))
        self._sizes: dict[Path, int] = {}
        self._done: set[Path] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="checkpoint-uploader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching, then upload whatever is complete (the trainer has exited)."""
        self._stop.set()
        self._thread.join()
        self.scan(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.scan()

    def scan(self, final: bool = False) -> None:
        for path in sorted(self.output_dir.glob(f"{self.name}-step*.safetensors")):
            if self._ready(path, final) and is_complete(path):
                self._upload_checkpoint(path)
        for path in sorted((self.output_dir / "sample").glob("*.png")):
            if self._ready(path, final) and _png_complete(path):
                self._upload_sample(path)
        if self.save_state:
            for folder in sorted(self.output_dir.glob(f"{self.name}-step*-state")):
                files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
                ready = [self._ready(p, final) for p in files]
                if (folder / "train_state.json").exists() and all(ready):
                    # train_state.json goes last: its presence in storage marks the state as whole.
                    for path in sorted(files, key=lambda p: p.name == "train_state.json"):
                        self._upload(path, self.prefix + "state/" + path.relative_to(self.output_dir).as_posix())

    def _ready(self, path: Path, final: bool) -> bool:
        if path in self._done:
            return False
        size = path.stat().st_size
        stable = self._sizes.get(path) == size
        self._sizes[path] = size
        return size > 0 and (stable or final)

    def _upload(self, path: Path, key: str, content_type: str = "application/octet-stream") -> tuple[str, int]:
        digest, size = self.store.upload(path, key, content_type)
        self._done.add(path)
        return digest, size

    def _upload_checkpoint(self, path: Path) -> None:
        step = int(_STEP.search(path.name).group(1))
        key = self.prefix + path.name
        metadata = {k: v for k, v in read_header(path).metadata.items() if k.startswith("ss_")}
        digest, size = self._upload(path, key)
        self.reporter.custom(
            {"type": CHECKPOINT, "step": step, "key": key, "sha256": digest, "size": size, "metadata": metadata}
        )
        self.reporter.log(f"uploaded checkpoint step {step} ({size / 1e6:.1f} MB) to {key}")

    def _upload_sample(self, path: Path) -> None:
        match = _SAMPLE_STEP.search(path.name)
        key = self.prefix + "samples/" + path.name
        self._upload(path, key, "image/png")
        self.reporter.custom({"type": SAMPLE, "step": int(match.group(1)) if match else None, "key": key})


def _png_complete(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - len(_PNG_END)))
        return handle.read() == _PNG_END
