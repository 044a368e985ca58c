"""Time the demo model (18 photos) from `modelcrew upload` to platform_exports in dry-run, as the README runs it.

A fresh DAGSTER_HOME with the checkout's dagster.yaml and local storage; `modelcrew upload`, then
`dagster-daemon run` (as scripts/dev.sh: upload first, then start Dagster), whose upload sensor launches
model_pipeline. Prints the total wall (upload start to platform_exports done), the run's own wall, the sum of step
compute (STEP_START to STEP_SUCCESS in the event log), the overhead (wall minus compute), the number of
steps and the mean launch cost per step (STEP_WORKER_STARTING to STEP_START), and the import time of
modelcrew_assets.definitions. Goal: under 60 s total.
Run: .venv/bin/python benchmarks/pipeline_dry_run.py
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import dagster as dg

from modelcrew_assets.settings import DRY_RUN_ENV, STORAGE_URL_ENV, UPLOAD_QUEUE_URL_ENV

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = "bench"
GOAL_S = 60.0
RUN_TIMEOUT_S = 600.0
EXPORT_STEP = "platform_exports"


@dataclass(frozen=True)
class RunTimes:
    enqueued: float  # wall-clock timestamps from the run's event log
    started: float
    exported: float  # platform_exports succeeded: the end of what the goal times
    step_compute: dict[str, float]  # steps finished by then
    later_steps: tuple[str, ...]  # steps downstream of platform_exports, not timed by the goal
    launch_mean: float

    @property
    def compute(self) -> float:
        return sum(self.step_compute.values())

    @property
    def steps(self) -> int:
        return len(self.step_compute)


def write_targets(folder: Path) -> int:
    """The bundled demo's targets (at least 15 usable photos and one the curation excludes); how many."""
    demo = resources.files("modelcrew_assets.demo") / "targets"
    folder.mkdir()
    for source in demo.iterdir():
        (folder / source.name).write_bytes(source.read_bytes())
    return len(list(folder.iterdir()))


def definitions_import_s(env: dict[str, str]) -> float:
    """Cumulative import time of modelcrew_assets.definitions, from `python -X importtime`."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import modelcrew_assets.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in reversed(done.stderr.splitlines()) if line.endswith("| modelcrew_assets.definitions"))
    return int(line.split("|")[1]) / 1e6


def wait_for_run(home: Path, daemon_log: Path) -> dg.DagsterRun:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": MODEL}))
            if runs and runs[0].status == dg.DagsterRunStatus.SUCCESS:
                return runs[0]
            if runs and runs[0].status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
                raise RuntimeError(f"run {runs[0].run_id} {runs[0].status.value}:\n{daemon_log.read_text()[-3000:]}")
            time.sleep(0.5)
    raise RuntimeError(f"no successful run within {RUN_TIMEOUT_S:.0f}s:\n{daemon_log.read_text()[-3000:]}")


def run_times(home: Path, run_id: str) -> RunTimes:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.all_logs(run_id)
    first_seen: dict[str, float] = {}
    started: dict[str, float] = {}
    compute: dict[str, float] = {}
    ends: dict[str, float] = {}
    lifecycle: dict[dg.DagsterEventType, float] = {}
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        lifecycle.setdefault(event.event_type, record.timestamp)
        if event.event_type == dg.DagsterEventType.STEP_WORKER_STARTING:
            first_seen[event.step_key] = record.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = record.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            compute[event.step_key] = record.timestamp - started[event.step_key]
            ends[event.step_key] = record.timestamp
    # The in-process executor launches no step workers; its launch cost is then zero.
    launches = [started[step] - first_seen.get(step, started[step]) for step in started]
    exported = ends[EXPORT_STEP]
    return RunTimes(
        enqueued=lifecycle[dg.DagsterEventType.RUN_ENQUEUED],
        started=lifecycle[dg.DagsterEventType.RUN_START],
        exported=exported,
        step_compute={step: seconds for step, seconds in compute.items() if ends[step] <= exported},
        later_steps=tuple(step for step in compute if ends[step] > exported),
        launch_mean=sum(launches) / len(launches),
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="modelcrew-bench-", ignore_cleanup_errors=True) as scratch:
        base = Path(scratch)
        home = base / "dagster_home"
        home.mkdir()
        os.environ["DAGSTER_HOME"] = str(home)  # the instance this process reads is the daemon's
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        # Create the sqlite storage now: processes migrating a fresh home at once can leave two alembic heads.
        dg.DagsterInstance.from_config(str(home)).dispose()
        env = {
            **os.environ,
            STORAGE_URL_ENV: f"file://{base / 'storage'}",
            DRY_RUN_ENV: "1",
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }
        # Dry-run on local storage, whatever the caller's shell has set.
        for name in ("MAXSTUDIO_API_KEY", "RUNPOD_API_KEY", "CAPTION_API_KEY", UPLOAD_QUEUE_URL_ENV):
            env.pop(name, None)
        import_s = definitions_import_s(env)
        photos = write_targets(base / "targets")
        demo = resources.files("modelcrew_assets.demo")
        (base / "model.toml").write_text(demo.joinpath("model.toml").read_text().replace('"demo"', f'"{MODEL}"', 1))

        start = time.time()
        subprocess.run(
            [
                str(BIN / "modelcrew"),
                "upload",
                MODEL,
                "--face",
                str(demo / "face.jpg"),
                "--targets",
                str(base / "targets"),
                "--manifest",
                str(base / "model.toml"),
            ],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        uploaded = time.time()
        daemon_log = base / "daemon.log"
        with daemon_log.open("w") as log:
            daemon = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                run = wait_for_run(home, daemon_log)
            finally:
                os.killpg(daemon.pid, signal.SIGTERM)
                daemon.wait(timeout=60)
        times = run_times(home, run.run_id)
    total = times.exported - start
    run_wall = times.exported - times.started

    print(f"import modelcrew_assets.definitions: {import_s:.2f}s")
    print(f"upload ({photos} photos, CLI): {uploaded - start:.1f}s")
    print(f"daemon start to run queued (code location load, sensor tick): {times.enqueued - uploaded:.1f}s")
    print(f"run queued to RUN_START (run coordinator, run worker start): {times.started - times.enqueued:.1f}s")
    print(f"total wall, upload start to platform_exports done: {total:.1f}s")
    print(f"run wall (RUN_START to platform_exports done): {run_wall:.1f}s")
    print(f"sum of step compute: {times.compute:.1f}s over {times.steps} steps")
    for step, seconds in sorted(times.step_compute.items(), key=lambda item: -item[1]):
        print(f"  {step}: {seconds:.1f}s")
    print(f"overhead, run wall minus compute: {run_wall - times.compute:.1f}s")
    print(
        f"overhead, total wall minus compute: {total - times.compute:.1f}s "
        f"({(total - times.compute) / times.steps:.2f}s per step)"
    )
    print(f"launch per step (worker starting to STEP_START), mean: {times.launch_mean:.2f}s")
    if times.later_steps:
        print(f"after platform_exports, not timed: {', '.join(times.later_steps)}")
    print(f"under {GOAL_S:.0f} s: {'PASS' if total < GOAL_S else 'FAIL'}")


if __name__ == "__main__":
    main()
