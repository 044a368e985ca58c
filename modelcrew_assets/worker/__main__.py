"""`python -m modelcrew_assets.worker <command>`: opens Dagster Pipes and runs one command under it.

Commands read their settings from the Pipes extras, so the launcher (a RunPod pod, a local process)
only has to pass the command name and the Pipes bootstrap environment. While a command runs the worker
sends a heartbeat; SIGTERM (the local executor's cancel, RunPod's podStop) unwinds it like an exception, so
the trainer is killed on the way out; on a RunPod pod it stops its own pod once Pipes is closed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from dagster_pipes import PipesContext, PipesS3ContextLoader, PipesS3MessageWriter, open_dagster_pipes

from modelcrew_assets.worker import own_pod
from modelcrew_assets.worker.heartbeat import heartbeat
from modelcrew_assets.worker.train import WorkerError

TRANSPORT_ENV = "MODELCREW_PIPES_TRANSPORT"  # "s3" on remote boxes, unset for local temp files
FLUSH_ENV = "MODELCREW_PIPES_FLUSH_SECONDS"

# Imported only when chosen: `train` runs with kohya's environment alone, while `generate` and `batch`
# also need OpenCV/numpy/Pillow (and torch/diffusers for real renders).
COMMANDS = {
    "train": "modelcrew_assets.worker.train",
    "generate": "modelcrew_assets.worker.generate",
    "batch": "modelcrew_assets.worker.batch",
}


@contextmanager
def open_pipes() -> Iterator[PipesContext]:
    if os.environ.get(TRANSPORT_ENV) == "s3":
        client = boto3.client("s3", region_name=os.environ.get("AWS_REGION") or None)
        interval = float(os.environ.get(FLUSH_ENV, "5"))
        with open_dagster_pipes(
            context_loader=PipesS3ContextLoader(client=client),
            message_writer=PipesS3MessageWriter(client=client, interval=interval),
        ) as pipes:
            yield pipes
    else:
        with open_dagster_pipes() as pipes:
            yield pipes


class Terminated(BaseException):
    """SIGTERM: unwind through every `finally` (the trainer is killed there) and report it through Pipes."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated(f"worker received signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelcrew_assets.worker")
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _terminated)
    if own_pod.on_runpod() and os.environ.get(TRANSPORT_ENV) == "s3":
        client = boto3.client("s3", region_name=os.environ.get("AWS_REGION") or None)
        if own_pod.container_was_restarted(client):
            logging.getLogger("modelcrew.worker").error(
                "RunPod restarted this container after the worker had run: stopping the pod instead of "
                "running the work again"
            )
            own_pod.stop_own_pod()
            return 1
    try:
        command = importlib.import_module(COMMANDS[args.command]).run
        with open_pipes() as pipes, heartbeat(pipes):
            command(pipes)
    except (WorkerError, Terminated):
        # Already reported through Pipes (result message and the closed message's exception).
        return 1
    finally:
        if own_pod.on_runpod():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # podStop's own SIGTERM just ends us
            own_pod.stop_own_pod()
    return 0


if __name__ == "__main__":
    sys.exit(main())
