"""The live video providers against the fake Runway and the fake fal queue, and how one is chosen."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from modelcrew_assets.generated_reels.ffmpeg import probe
from modelcrew_assets.generated_reels.providers import VideoJobFailedError, VideoRequest, VideoResultGoneError
from modelcrew_assets.generated_reels.simulated import SimulatedVideoResource
from modelcrew_assets.generated_reels.stills import prompt_still
from modelcrew_assets.resources.fal_video import FalVideoResource
from modelcrew_assets.resources.runway import RunwayResource
from modelcrew_assets.resources.selection import resources_from_env
from modelcrew_assets.settings import MissingCredentialError
from modelcrew_assets_tests.fakes.fal import FAKE_FAL_KEY
from modelcrew_assets_tests.fakes.runway import FAKE_RUNWAY_SECRET

FAST = {"poll_first_s": 0.0, "poll_interval_s": 0.01, "retry_base_delay_s": 0.0, "retry_max_delay_s": 0.0}


def _request(storage, model: str = "gen4_turbo") -> VideoRequest:
    still = prompt_still(Image.new("RGB", (90, 160), (200, 120, 90)))
    storage.put_bytes("models/blondie/generated_reels/stills/s.jpg", still, "image/jpeg")
    return VideoRequest("models/blondie/generated_reels/stills/s.jpg", still, "Slow push-in. a woman", 7, 1, model)


def _make(resource, storage, request: VideoRequest) -> tuple[str, bytes]:
    async def run() -> tuple[str, bytes]:
        async with resource.videos(storage) as provider:
            job_id = await provider.create(request)
            return job_id, await provider.finish(job_id, request)

    return asyncio.run(run())


def runway(fake, **settings) -> RunwayResource:
    return RunwayResource(api_secret=FAKE_RUNWAY_SECRET, base_url=fake.url, **{**FAST, **settings})


def test_runway_gets_the_still_as_a_data_uri_with_its_version_header_and_is_polled_through_throttled(
    local_storage, fake_runway
):
    job_id, mp4 = _make(runway(fake_runway), local_storage, _request(local_storage))
    task = fake_runway.tasks[0]
    assert job_id == task.id and task.status == "SUCCEEDED" and task.polls == 4  # PENDING, THROTTLED, RUNNING
    assert task.body["promptImage"].startswith("data:image/jpeg;base64,")
    assert {k: task.body[k] for k in ("model", "ratio", "duration", "seed")} == {
        "model": "gen4_turbo", "ratio": "720:1280", "duration": 1, "seed": 7,
    }  # fmt: skip
    assert {r["version"] for r in fake_runway.requests} == {"2024-11-06"}
    assert probe(mp4).duration_s == pytest.approx(1.0, abs=0.05)


def test_runway_refuses_a_presigned_style_url_it_cannot_head_like_the_real_api(fake_runway):
    import httpx

    body = {"model": "gen4_turbo", "promptImage": f"{fake_runway.url}/x.jpg?X-Amz-Signature=1", "ratio": "720:1280"}
    answer = httpx.post(
        f"{fake_runway.url}/v1/image_to_video",
        json=body,
        headers={"Authorization": f"Bearer {FAKE_RUNWAY_SECRET}", "X-Runway-Version": "2024-11-06"},
    )
    assert answer.status_code == 400 and "promptImage" in answer.json()["error"] and not fake_runway.tasks


def test_runway_safety_failure_is_final_and_not_refunded(local_storage, fake_runway):
    fake_runway.scripts.append(("RUNNING", ("FAILED", "SAFETY.INPUT.IMAGE")))
    with pytest.raises(VideoJobFailedError, match="SAFETY.INPUT.IMAGE") as failed:
        _make(runway(fake_runway), local_storage, _request(local_storage))
    assert failed.value.retryable is False and failed.value.refunded is False


def test_runway_429_on_create_is_waited_out_and_makes_one_task(local_storage, fake_runway):
    fake_runway.create_faults.append("rate_limited")
    _make(runway(fake_runway), local_storage, _request(local_storage))
    assert len(fake_runway.tasks) == 1 and sum(r["method"] == "POST" for r in fake_runway.requests) == 2


def test_an_expired_output_url_is_signed_again_by_reading_the_task(local_storage, fake_runway):
    fake_runway.expired_signatures = 1
    job_id, mp4 = _make(runway(fake_runway), local_storage, _request(local_storage))
    assert probe(mp4).codec == "h264" and fake_runway.tasks[0].polls == 5  # 4 polls + 1 read for a fresh URL


def test_an_output_that_stays_expired_is_reported_gone(local_storage, fake_runway):
    fake_runway.expired_signatures = 2
    with pytest.raises(VideoResultGoneError, match="HTTP 403"):
        _make(runway(fake_runway), local_storage, _request(local_storage))


def test_fal_fetches_the_still_through_a_presigned_url_and_returns_kling_video(s3_storage, fake_fal):
    resource = FalVideoResource(api_key=FAKE_FAL_KEY, queue_url=fake_fal.url, **FAST)
    request = _request(s3_storage, FalVideoResource.default_model)
    job_id, mp4 = _make(resource, s3_storage, request)
    submitted = fake_fal.submitted[0]
    assert job_id == submitted.id and submitted.model == FalVideoResource.default_model
    assert "X-Amz-Signature" in submitted.body["image_url"] and submitted.still == request.still_jpeg
    assert submitted.body["duration"] == "1" and submitted.polls == 3
    assert Image.open(io.BytesIO(request.still_jpeg)).size == (720, 1280) and probe(mp4).codec == "h264"


def test_fal_failed_request_is_reported_with_its_error_type(local_storage, fake_fal):
    fake_fal.failures.append("content_policy_violation")
    resource = FalVideoResource(api_key=FAKE_FAL_KEY, queue_url=fake_fal.url, **FAST)
    with pytest.raises(VideoJobFailedError, match="content_policy_violation") as failed:
        _make(resource, local_storage, _request(local_storage, FalVideoResource.default_model))
    assert failed.value.retryable is False
    assert fake_fal.submitted[0].body["image_url"].startswith("data:image/jpeg;base64,")  # local storage


def test_selection_binds_runway_by_default_fal_on_request_and_the_simulated_one_in_dry_run(monkeypatch):
    assert isinstance(resources_from_env()["video"], RunwayResource)
    monkeypatch.setenv("MODELCREW_VIDEO_PROVIDER", "fal")
    monkeypatch.setenv("FAL_KEY", "k")
    video = resources_from_env()["video"].process_config_and_initialize()
    assert isinstance(video, FalVideoResource) and video.api_key == "k"
    monkeypatch.setenv("MODELCREW_DRY_RUN", "1")
    assert isinstance(resources_from_env()["video"], SimulatedVideoResource)


def test_missing_runway_secret_names_the_variable_before_any_request(local_storage, fake_runway):
    with pytest.raises(MissingCredentialError, match="RUNWAYML_API_SECRET"):
        RunwayResource(base_url=fake_runway.url).check_ready(local_storage)
    assert not fake_runway.requests
