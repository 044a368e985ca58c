"""The worker's heartbeat: a small custom Pipes message at a fixed interval, so the orchestrator can tell
a worker that is busy (a long upload, a slow first step) from one that is gone. Dagster Pipes has no
heartbeat of its own; the executor filters these out of `WorkerRun.messages`."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dagster_pipes import PipesContext

from modelcrew_assets.worker.messages import Heartbeat

HEARTBEAT_ENV = "MODELCREW_HEARTBEAT_SECONDS"


@contextmanager
def heartbeat(pipes: PipesContext) -> Iterator[None]:
    interval = float(os.environ.get(HEARTBEAT_ENV) or "30")
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                pipes.report_custom_message(Heartbeat().model_dump(mode="json"))
            except Exception:  # Pipes is closing: nothing left to keep alive
                return

    thread = threading.Thread(target=beat, name="pipes-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
