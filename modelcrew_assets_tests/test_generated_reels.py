"""generated_reels through dg.materialize: dry run end to end, the ledger under crash and rerun against the
fake Runway, moderation refusals, and the budget refusal."""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import wave

import dagster as dg
import pytest
from PIL import Image

from modelcrew_assets.generated_reels import ffmpeg
from modelcrew_assets.generated_reels.assets import generated_reels
from modelcrew_assets.generated_reels.ffmpeg import probe
from modelcrew_assets.generated_reels.index import GeneratedReels
from modelcrew_assets.generated_reels.labels import read_mp4_xmp
from modelcrew_assets.generated_reels.ledger import ReelLedger
from modelcrew_assets.generated_reels.simulated import SimulatedVideoResource
from modelcrew_assets.generated_reels.stills import identity_scores
from modelcrew_assets.handoffs import (
    GeneratedBatch,
    GeneratedImage,
    PlatformExports,
    read_index,
    read_model_spec,
    write_index,
)
from modelcrew_assets.platform_exports.labels import TRAINED_ALGORITHMIC_MEDIA, read_digital_source_type
from modelcrew_assets.resources.c2pa_signing import C2paSigningResource
from modelcrew_assets.resources.runway import RunwayResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets_tests.builders import jpeg_bytes, manifest_text
from modelcrew_assets_tests.fakes.runway import FAKE_RUNWAY_SECRET

MODEL = "blondie"
REELS = '[export]\nwatermark = "@blondie"\n[reels]\ntop_n = {top_n}\nmin_score = 0.3\nduration = 1\n{extra}'


@pytest.fixture(autouse=True)
def fast_x264(monkeypatch):
    monkeypatch.setattr(ffmpeg, "X264_PRESET", "ultrafast")  # the same 1080x1920 H.264, made sooner


@pytest.fixture(scope="module")
def still_scores(tmp_path_factory, astronaut) -> dict[str, float]:
    """The stills' identity scores, computed once (dlib) for the tests whose subject is not the scoring."""
    storage = StorageResource(url=f"file://{tmp_path_factory.mktemp('scores')}")
    batch = setup_model(storage, astronaut)
    return identity_scores(storage, read_model_spec(storage, MODEL), batch)


def setup_model(
    storage, astronaut: Image.Image, extra: str = "", top_n: int = 2, scores: dict[str, float] | None = None
) -> GeneratedBatch:
    """The face, three stills of it (the third without a face) and the exports of the batch; `scores`, the
    stills' identity as an earlier run cached it."""
    storage.put_bytes(
        f"uploads/{MODEL}/model.toml", manifest_text(MODEL, MODEL, REELS.format(extra=extra, top_n=top_n)).encode()
    )
    storage.put_bytes(f"uploads/{MODEL}/face/face.jpg", jpeg_bytes(astronaut))
    crops = [
        astronaut.crop((80, 0, 368, 512)),
        astronaut.crop((60, 10, 348, 522)),
        Image.new("RGB", (288, 512), "gray"),
    ]
    images = []
    for index, crop in enumerate(crops):
        data = jpeg_bytes(crop)
        key = f"models/{MODEL}/generated_batches/batch-a/{index:04d}.png"
        storage.put_bytes(key, data)
        images.append(
            GeneratedImage(
                key=key, sha256=hashlib.sha256(data).hexdigest(), prompt=f"{MODEL}, portrait number {index}, 85mm",
                negative_prompt="", seed=index, width=288, height=512, checkpoint_sha256="1" * 64, index=index,
            )
        )  # fmt: skip
    batch = GeneratedBatch(model=MODEL, batch_id="batch-a", images=tuple(images))
    write_index(storage, batch)
    write_index(
        storage, PlatformExports(model=MODEL, batch_id="batch-a", settings_fingerprint="f", exports=(), manifests=())
    )
    if scores is not None:
        storage.put_bytes(f"models/{MODEL}/generated_reels/scores/batch-a.json", json.dumps(scores).encode())
    return batch


def materialize(instance, storage, video, raise_on_error: bool = True, config: dict | None = None):
    instance.add_dynamic_partitions("models", [MODEL])
    return dg.materialize(
        [generated_reels],
        partition_key=MODEL,
        instance=instance,
        resources={"storage": storage, "video": video, "c2pa": C2paSigningResource()},
        run_config={"ops": {"generated_reels": {"config": config or {}}}},
        raise_on_error=raise_on_error,
    )


def metadata_of(result) -> dict:
    return result.asset_materializations_for_node("generated_reels")[0].metadata


def runway(fake) -> RunwayResource:
    return RunwayResource(
        api_secret=FAKE_RUNWAY_SECRET, base_url=fake.url, poll_first_s=0, poll_interval_s=0.01, retry_base_delay_s=0,
        read_timeout_s=0.5,
    )  # fmt: skip


def _tone_wav(seconds: float = 0.4) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as track:
        track.setnchannels(1)
        track.setsampwidth(2)
        track.setframerate(8000)
        frames = (struct.pack("<h", int(9000 * math.sin(i / 3))) for i in range(int(8000 * seconds)))
        track.writeframes(b"".join(frames))
    return buffer.getvalue()


def test_dry_run_makes_labelled_1080x1920_reels_of_the_best_stills_with_music_and_reuses_them(
    instance, local_storage, astronaut
):
    batch = setup_model(local_storage, astronaut, top_n=1)
    local_storage.put_bytes(f"uploads/{MODEL}/music/track.wav", _tone_wav())
    result = materialize(instance, local_storage, SimulatedVideoResource())
    index = read_index(local_storage, MODEL, GeneratedReels)
    assert len(index.reels) == 1 and index.dry_run
    scores = json.loads(local_storage.get_bytes(f"models/{MODEL}/generated_reels/scores/batch-a.json"))
    best = max(batch.images, key=lambda image: scores[image.sha256])
    reel = index.reels[0]
    assert reel.still_key == best.key and reel.identity == scores[best.sha256]  # the best still is animated
    mp4 = local_storage.get_bytes(reel.video_key)
    info = probe(mp4)
    assert (info.width, info.height, info.codec, info.pixel_format) == (1080, 1920, "h264", "yuv420p")
    assert info.duration_s == pytest.approx(1.0, abs=0.1) and info.audio_codec == "aac"
    assert mp4.index(b"moov") < mp4.index(b"mdat")  # faststart
    assert TRAINED_ALGORITHMIC_MEDIA.encode() in (read_mp4_xmp(mp4) or b"")
    assert read_digital_source_type(local_storage.get_bytes(reel.poster_key)) == TRAINED_ALGORITHMIC_MEDIA
    assert reel.prompt.split(".")[0].lower() in [m.lower() for m in _motions()] and MODEL not in reel.prompt
    assert all(check.passed for check in result.get_asset_check_evaluations())
    metadata = metadata_of(result)
    assert metadata["dry_run"].value is True and metadata["jobs_created"].value == 1
    assert "data:image/jpeg;base64," in metadata["reels"].value and "dry-run-video-" in metadata["reels"].value

    again = materialize(instance, local_storage, SimulatedVideoResource())
    assert metadata_of(again)["jobs_created"].value == 0
    assert read_index(local_storage, MODEL, GeneratedReels).reels == index.reels


def _motions() -> tuple[str, ...]:
    from modelcrew_assets.manifest import DEFAULT_MOTIONS

    return DEFAULT_MOTIONS


def test_a_run_killed_after_the_create_polls_the_same_task_on_restart(
    instance, local_storage, astronaut, fake_runway, monkeypatch, still_scores
):
    setup_model(local_storage, astronaut, scores=still_scores)
    fake_runway.scripts.extend([("RUNNING", ("FAILED", "SAFETY.INPUT.IMAGE")), ("RUNNING", "SUCCEEDED")])
    from modelcrew_assets.resources.runway import RunwayVideos

    real_finish = RunwayVideos.finish

    async def die(self, job_id, request):
        raise SystemError("worker killed while the job ran")

    monkeypatch.setattr(RunwayVideos, "finish", die)
    crashed = materialize(instance, local_storage, runway(fake_runway), raise_on_error=False)
    assert not crashed.success and len(fake_runway.tasks) == 2
    assert sorted(len(r.jobs) for r in ReelLedger(local_storage, MODEL).all()) == [1, 1]

    monkeypatch.setattr(RunwayVideos, "finish", real_finish)
    restarted = materialize(instance, local_storage, runway(fake_runway))
    assert len(fake_runway.tasks) == 2  # polled, not created again
    records = {r.outcome: r for r in ReelLedger(local_storage, MODEL).all()}
    assert set(records) == {"done", "refused"} and records["refused"].jobs[0].refunded is False
    assert metadata_of(restarted)["jobs_created"].value == 0
    assert len(read_index(local_storage, MODEL, GeneratedReels).reels) == 1
    materialize(instance, local_storage, runway(fake_runway))
    assert len(fake_runway.tasks) == 2  # a moderation refusal is not tried again
    logs = " ".join(str(r.user_message) for r in instance.all_logs(restarted.run_id))
    assert FAKE_RUNWAY_SECRET not in logs and FAKE_RUNWAY_SECRET not in str(metadata_of(restarted))


def test_an_unanswered_create_is_parked_until_resubmitted_by_hand(
    instance, local_storage, astronaut, fake_runway, still_scores
):
    setup_model(local_storage, astronaut, top_n=1, scores=still_scores)
    fake_runway.create_faults.append("answer_lost")
    result = materialize(instance, local_storage, runway(fake_runway))
    assert metadata_of(result)["needs_attention"].value and len(fake_runway.tasks) == 1
    materialize(instance, local_storage, runway(fake_runway))
    assert len(fake_runway.tasks) == 1
    materialize(instance, local_storage, runway(fake_runway), config={"resubmit_ambiguous": True})
    assert len(fake_runway.tasks) == 2 and len(read_index(local_storage, MODEL, GeneratedReels).reels) == 1


def test_the_budget_refuses_before_any_job_with_the_figures(
    instance, local_storage, astronaut, fake_runway, still_scores
):
    # Room for 3 reels, but the faceless still is under min_score: 2 jobs are planned.
    setup_model(local_storage, astronaut, extra="daily_budget_usd = 0.08\n", top_n=3, scores=still_scores)
    with pytest.raises(
        dg.Failure, match=r"2 new video job\(s\) x 1 s x USD 0.050/s = USD 0.10.*daily_budget_usd = USD 0.08"
    ):
        materialize(instance, local_storage, runway(fake_runway))
    assert not fake_runway.tasks and not any(r["method"] == "POST" for r in fake_runway.requests)
