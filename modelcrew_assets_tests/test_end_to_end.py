"""The platform as the studio runs it: `modelcrew upload` into S3 (moto), the Dagster daemon's sensor
starts the run, every stage runs in dry-run to platform_exports; then lineage, metadata and secrets. While
that run goes, a backfill of a second model runs beside it, and the `gpu` pool at 1 keeps their GPU stages
apart. One test, not two: every dry-run pipeline more keeps both cores busy for most of a minute."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import boto3
import dagster as dg
import pytest

from modelcrew_assets.definitions import defs
from modelcrew_assets_tests.fakes.aws_env import TEST_REGION
from modelcrew_assets_tests.fakes.s3 import make_bucket

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PIPELINE = [
    "swapped_faces",
    "captions",
    "kohya_dataset",
    "lora_checkpoints",
    "checkpoint_evaluations",
    "generated_batches",
    "platform_exports",
]
GPU_STEPS = {"lora_checkpoints", "checkpoint_evaluations", "generated_batches"}
SENTINELS = {
    "MAXSTUDIO_API_KEY": "sentinel-maxstudio-7f3a",
    "CAPTION_API_KEY": "sentinel-caption-91bd",
    "RUNPOD_API_KEY": "sentinel-runpod-c4e2",
    "MODELCREW_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hooks/sentinel-webhook-55d1",
}
# Every wait below has a deadline, and the test's pytest timeout covers the sum of its waits plus the
# daemon's shutdown, so a slow machine fails with the wait's own message, not pytest's.
CLI_TIMEOUT_S = 60  # a `modelcrew` or `dagster` CLI call takes 2-6 s
DAEMON_STOP_S = 60
SENSOR_RUN_WAIT_S = 90  # the sensor's first tick after the daemon starts launches the run
BOTH_RUNS_WAIT_S = 300  # two dry-run models, about a minute each on 2 cores, GPU stages one at a time
POLL_S = 0.5
BACKFILL_PHOTOS = 6  # the backfilled model is about the pool: a small training set keeps its pipeline short
SMALL_RUN = """
[training]
max_train_steps = 1000
save_every_n_steps = 250

[generation]
images = 4

[reels]
top_n = 1  # one reel shows the stage runs; each more is ~3 s of ffmpeg per model
"""
# The backfilled model is about the pool, not the outputs: two images and no reel still run every stage
# once. Training keeps SMALL_RUN's four checkpoints: with two the evaluation finds no sweet spot and its
# blocking check stops the run.
BACKFILL_RUN = """
[training]
max_train_steps = 1000
save_every_n_steps = 250

[generation]
images = 2

[reels]
top_n = 0
"""


@dataclass
class Deployment:
    home: Path
    bucket: str
    env: dict[str, str]
    daemon_log: Path
    daemon: subprocess.Popen | None = None

    def start_daemon(self) -> None:
        """Once per module, after the first upload as scripts/dev.sh does (`modelcrew demo`, then Dagster):
        the sensor's first tick sees the upload instead of the test waiting out its 30 s interval."""
        if self.daemon is not None:
            return
        with self.daemon_log.open("w") as log:
            self.daemon = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop_daemon(self) -> None:
        if self.daemon is None:
            return
        os.killpg(self.daemon.pid, signal.SIGTERM)
        try:
            self.daemon.wait(timeout=DAEMON_STOP_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.daemon.pid, signal.SIGKILL)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(args, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
        # A failed CLI call must say why in the test report, not only its exit status.
        assert done.returncode == 0, f"{' '.join(args[1:])} exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done

    def instance(self) -> dg.DagsterInstance:
        os.environ["DAGSTER_HOME"] = str(self.home)
        return dg.DagsterInstance.from_config(str(self.home))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, moto_endpoint) -> Iterator[Deployment]:
    base = tmp_path_factory.mktemp("e2e")
    home = base / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    # Create the sqlite storage before the daemon starts: processes migrating a fresh home at the same
    # moment can leave two alembic heads, and then no code location loads.
    dg.DagsterInstance.from_config(str(home)).dispose()
    bucket = make_bucket(moto_endpoint)
    env = {
        **os.environ,
        **SENTINELS,
        "DAGSTER_HOME": str(home),
        "MODELCREW_STORAGE_URL": f"s3://{bucket}/studio",
        "AWS_ENDPOINT_URL_S3": moto_endpoint,
        "AWS_REGION": TEST_REGION,
        "MODELCREW_DRY_RUN": "1",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    deployment = Deployment(home, bucket, env, base / "daemon.log")
    try:
        yield deployment
    finally:
        deployment.stop_daemon()


def upload_small_model(
    deployment: Deployment, name: str, tmp_path: Path, photos: int | None = None, run: str = SMALL_RUN
) -> None:
    """The demo model under `name` with `run`'s settings; `photos`: only that many of its targets (and a
    dataset minimum to match), where a test is about scheduling rather than the training set."""
    demo = resources.files("modelcrew_assets.demo")
    manifest = demo.joinpath("model.toml").read_text().replace('"demo"', f'"{name}"', 1) + run
    with resources.as_file(demo) as folder:
        targets = folder / "targets"
        if photos is not None:
            manifest += f"\n[dataset]\nmin_photos = {photos}\nrecommended_photos = {photos}\n"
            targets = tmp_path / f"{name}-targets"
            targets.mkdir()
            for photo in sorted(p for p in (folder / "targets").iterdir() if p.name != "two-people.jpg")[:photos]:
                shutil.copy(photo, targets / photo.name)
        (tmp_path / f"{name}.toml").write_text(manifest)
        deployment.run(
            str(BIN / "modelcrew"),
            "upload",
            name,
            "--face",
            str(folder / "face.jpg"),
            "--targets",
            str(targets),
            "--manifest",
            str(tmp_path / f"{name}.toml"),
        )


def wait_for_runs(
    deployment: Deployment, partitions: set[str], timeout_s: float, finished: bool = True
) -> list[dg.DagsterRun]:
    """Wait until every partition has a run, a finished one unless `finished` is False; fail early on a
    failed one."""
    deadline = time.monotonic() + timeout_s
    with deployment.instance() as instance:
        while time.monotonic() < deadline:
            runs = [r for r in instance.get_runs() if r.tags.get("dagster/partition") in partitions]
            failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
            assert not failed, f"run failed: {failed[0].run_id}\n{deployment.daemon_log.read_text()[-3000:]}"
            done = {
                r.tags["dagster/partition"] for r in runs if r.status == dg.DagsterRunStatus.SUCCESS or not finished
            }
            if done == partitions:
                return runs
            time.sleep(POLL_S)
    raise AssertionError(f"runs for {sorted(partitions)} did not {'finish' if finished else 'start'} in {timeout_s}s")


def materialization(instance: dg.DagsterInstance, asset: str, partition: str) -> dg.AssetMaterialization:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"{asset} has no materialization for {partition}"
    return records[0].asset_materialization


@pytest.mark.timeout(4 * CLI_TIMEOUT_S + SENSOR_RUN_WAIT_S + BOTH_RUNS_WAIT_S + DAEMON_STOP_S)  # 4 CLI calls, waits
def test_upload_runs_through_the_daemon_and_a_backfill_shares_its_gpu_pool_with_lineage_and_no_secret(
    deployment, tmp_path
):
    upload_small_model(deployment, "e2e", tmp_path)
    deployment.start_daemon()
    wait_for_runs(deployment, {"e2e"}, timeout_s=SENSOR_RUN_WAIT_S, finished=False)
    # A new model arrives for a backfill, not for the sensor: stop it as an operator would. The sensor's run is
    # still going, so the backfill's GPU stages contend with it for the pool.
    deployment.run(str(BIN / "dagster"), "sensor", "stop", "model_uploads_sensor", "-w", "workspace.yaml")
    upload_small_model(deployment, "bf-one", tmp_path, photos=BACKFILL_PHOTOS, run=BACKFILL_RUN)
    with deployment.instance() as instance:
        instance.add_dynamic_partitions("models", ["bf-one"])
    deployment.run(
        str(BIN / "dagster"),
        "job",
        "backfill",
        "-j",
        "model_pipeline",
        "-w",
        "workspace.yaml",
        "--partitions",
        "bf-one",
        "--noprompt",
    )
    runs = {r.tags["dagster/partition"]: r for r in wait_for_runs(deployment, {"e2e", "bf-one"}, BOTH_RUNS_WAIT_S)}
    run = runs["e2e"]
    assert run.tags["dagster/sensor_name"] == "model_uploads_sensor"
    assert "dagster/backfill" in runs["bf-one"].tags

    with deployment.instance() as instance:
        assert "e2e" in instance.get_dynamic_partitions("models")
        events = {asset: materialization(instance, asset, "e2e") for asset in PIPELINE}
        for asset, event in events.items():
            assert event.metadata["dry_run"].value is True, asset
            for dep in _deps(asset):
                parent = dep.asset_key.to_user_string()
                recorded = event.tags[f"dagster/input_data_version/{parent}"]
                if parent in events:
                    # Dagster records a partitioned input as sha256 over the partitions' data versions.
                    expected = hashlib.sha256(events[parent].tags["dagster/data_version"].encode()).hexdigest()
                    assert recorded == expected, (asset, parent)
        # The uploads' fingerprint, observed by the sensor, is what the run was started for and what
        # swapped_faces read (Dagster 1.13 does not yet hash observations into partitioned input versions).
        [observation] = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("model_uploads"), asset_partitions=["e2e"]), limit=1
        ).records
        assert observation.asset_observation.tags["dagster/data_version"] == run.tags["modelcrew/uploads"]
        pointer = events["swapped_faces"].tags["dagster/input_event_pointer/model_uploads"]
        assert int(pointer) == observation.storage_id
        assert events["lora_checkpoints"].metadata["dagster/row_count"].value == 4
        assert events["checkpoint_evaluations"].metadata["verdict"].value == "chosen"
        assert events["generated_batches"].metadata["dagster/row_count"].value == 4
        # Four prompts, four images: each prompt's first image is rendered at the first aspect (4:5), so the
        # feed gets all four as they are and TikTok only the crops that keep the face.
        exported = events["platform_exports"].metadata
        assert exported["exports_instagram_feed"].value == 4 and 1 <= exported["exports_tiktok"].value <= 4
        # The bundled demo is healthy: its one bad photo is excluded with its reason, and every check is green.
        assert events["swapped_faces"].metadata["excluded_photos"].value == 1
        assert "| two-people.jpg | excluded | 2 faces |" in events["swapped_faces"].metadata["verdicts"].value
        assert events["kohya_dataset"].metadata["photo_count"].value >= 15
        assert not _failed_checks(instance, run.run_id)
        assert materialization(instance, "platform_exports", "bf-one").metadata["dry_run"].value is True
        _assert_gpu_steps_never_overlapped(instance, list(runs.values()))

    storage_keys = _bucket_keys(deployment)
    assert any(key.endswith(".safetensors") for key in storage_keys)
    assert any("/platform_exports/" in key and key.endswith("manifest.csv") for key in storage_keys)
    _assert_no_sentinel(deployment, storage_keys)


def _assert_gpu_steps_never_overlapped(instance: dg.DagsterInstance, runs: list[dg.DagsterRun]) -> None:
    """From the event log: every GPU step of every run ran, and no two held the `gpu` pool at once."""
    intervals = []
    for run in runs:
        starts = {}
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None or event.step_key not in GPU_STEPS:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                starts[event.step_key] = record.timestamp
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                intervals.append((starts[event.step_key], record.timestamp, run.run_id, event.step_key))
    assert len(intervals) == len(runs) * len(GPU_STEPS)
    intervals.sort()
    for (_, end, *first), (start, _, *second) in zip(intervals, intervals[1:], strict=False):
        assert start >= end, f"{first} and {second} held the gpu pool at the same time"


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Every asset check the run evaluated that did not pass (none evaluated counts as a failure)."""
    evaluated, failed = 0, []
    for key in defs.resolve_asset_graph().asset_check_keys:
        for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=5):
            if record.run_id == run_id:
                evaluated += 1
                if record.evaluation is None or not record.evaluation.passed:
                    failed.append(key.to_user_string())
    return failed if evaluated else ["no check was evaluated"]


def _deps(asset: str) -> list[dg.AssetDep]:
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == dg.AssetKey(asset))
    return list(spec.deps)


def _bucket_keys(deployment: Deployment) -> list[str]:
    client = boto3.client("s3", region_name=TEST_REGION, endpoint_url=deployment.env["AWS_ENDPOINT_URL_S3"])
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=deployment.bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _assert_no_sentinel(deployment: Deployment, storage_keys: list[str]) -> None:
    """Event log (sqlite), compute logs, the daemon's output and every stored object: no credential."""
    client = boto3.client("s3", region_name=TEST_REGION, endpoint_url=deployment.env["AWS_ENDPOINT_URL_S3"])
    # sqlite keeps text uncompressed, so the raw bytes of Dagster's files cover the event log too.
    texts = [deployment.daemon_log.read_bytes()]
    texts += [path.read_bytes() for path in deployment.home.rglob("*") if path.is_file()]
    texts += [client.get_object(Bucket=deployment.bucket, Key=key)["Body"].read() for key in storage_keys]
    for name, secret in SENTINELS.items():
        token = secret.rsplit("/", 1)[-1].encode()
        assert not any(token in blob for blob in texts), f"{name} leaked"
