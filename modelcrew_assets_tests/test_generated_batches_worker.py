"""The `batch` worker's render loop on its own: skipping stored images, the time cap, records."""

from __future__ import annotations

import json

from modelcrew_assets.generated_batches.prompt_packs import image_key, record_key
from modelcrew_assets.object_store import ObjectStore
from modelcrew_assets.worker.batch import render_batch, stored_keys
from modelcrew_assets.worker.jobs import BatchJob
from modelcrew_assets.worker.messages import GENERATED_IMAGE

PREFIX = "models/blondie/generated_batches/b1/"
PROVENANCE = {
    "checkpoint_sha256": "c" * 64,
    "checkpoint_key": "k",
    "base_model": "base",
    "generator": "t",
    "dry_run": True,
}


def jobs(count: int) -> list[BatchJob]:
    return [
        BatchJob(
            id=f"{i:04d}", index=i, prompt=f"p{i}", negative_prompt="n", seed=100 + i, width=64, height=64,
            platform="feed", aspect="4:5", sampler="euler_a", steps=20, cfg=5.0, lora_weight=0.9,
            output_key=image_key("blondie", "b1", i), record_key=record_key("blondie", "b1", i),
        )
        for i in range(count)
    ]  # fmt: skip


class FakeClock:
    """Each render takes `per_image` seconds of make-believe time."""

    def __init__(self, per_image: float):
        self.now = 0.0
        self.per_image = per_image

    def __call__(self) -> float:
        return self.now

    def render(self, job) -> bytes:
        self.now += self.per_image
        return f"png {job.index}".encode()


def test_worker_skips_indices_already_stored_with_their_record(tmp_path):
    store = ObjectStore.from_url(f"file://{tmp_path}")
    for index in (0, 2):
        (tmp_path / PREFIX / "records").mkdir(parents=True, exist_ok=True)
        (tmp_path / image_key("blondie", "b1", index)).write_bytes(b"old")
        (tmp_path / record_key("blondie", "b1", index)).write_text("{}")
    (tmp_path / image_key("blondie", "b1", 3)).write_bytes(b"image without a record: rendered again")
    clock, messages = FakeClock(1.0), []
    outcome = render_batch(
        store, clock.render, jobs(4), PROVENANCE, stored_keys(store, PREFIX), messages.append, clock=clock
    )
    assert (outcome.rendered, outcome.skipped, outcome.stopped_by) == (2, 2, None)
    assert [m.index for m in messages if m.type == GENERATED_IMAGE] == [1, 3]
    assert (tmp_path / image_key("blondie", "b1", 0)).read_bytes() == b"old"
    assert (tmp_path / image_key("blondie", "b1", 3)).read_bytes() == b"png 3"


def test_time_cap_stops_after_the_image_in_flight(tmp_path):
    store = ObjectStore.from_url(f"file://{tmp_path}")
    clock, messages = FakeClock(10.0), []
    outcome = render_batch(
        store, clock.render, jobs(10), PROVENANCE, set(), messages.append, max_gpu_minutes=0.5, clock=clock
    )
    # Images start at t=0, 10 and 20 s; the one started at 20 s finishes at 30 s, then nothing new starts.
    assert (outcome.rendered, outcome.stopped_by) == (3, "max_gpu_minutes")
    assert sorted(p.name for p in (tmp_path / PREFIX).glob("*.png")) == ["0000.png", "0001.png", "0002.png"]


def test_each_record_follows_its_image_with_job_settings_and_provenance(tmp_path):
    store = ObjectStore.from_url(f"file://{tmp_path}")
    clock = FakeClock(2.5)
    render_batch(store, clock.render, jobs(1), PROVENANCE, set(), lambda message: None, clock=clock)
    record = json.loads((tmp_path / record_key("blondie", "b1", 0)).read_text())
    assert record["key"] == PREFIX + "0000.png" and record["seed"] == 100 and record["sampler"] == "euler_a"
    assert record["checkpoint_sha256"] == "c" * 64 and record["seconds"] == 2.5 and record["created_at"]
    assert len(record["sha256"]) == 64
