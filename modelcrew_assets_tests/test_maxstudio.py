"""MaxStudioResource against the fake MaxStudio: retries, the ambiguous-POST rule, malformed answers,
bounded concurrency, and the key staying out of every message."""

import asyncio
import time

import httpx
import pytest

from modelcrew_assets.face_detection import FaceBox
from modelcrew_assets.resources.http_api import AmbiguousRequestError, ApiError, JsonApiClient
from modelcrew_assets.resources.maxstudio_client import JobFailedError, JobTimeoutError
from modelcrew_assets.settings import MissingCredentialError
from modelcrew_assets_tests.builders import jpeg_bytes

BOX = FaceBox(160, 60, 110, 110)


@pytest.fixture
def urls(s3_storage, astronaut):
    s3_storage.put_bytes("uploads/blondie/targets/a.jpg", jpeg_bytes(astronaut))
    s3_storage.put_bytes("uploads/blondie/face/face.jpg", jpeg_bytes(astronaut))
    return (
        s3_storage.presigned_get_url("uploads/blondie/targets/a.jpg"),
        s3_storage.presigned_get_url("uploads/blondie/face/face.jpg"),
    )


async def swap_once(resource, urls):
    async with resource.client() as api:
        job_id = await api.create_swap(urls[0], [BOX], urls[1])
        return await api.download(await api.wait_for_swap(job_id))


def test_detect_create_poll_download_round_trip(fake_maxstudio, urls):
    fake_maxstudio.faults.detect_with_dlib = True

    async def go():
        async with fake_maxstudio.resource().client() as api:
            faces = await api.detect_faces(urls[0])
            job_id = await api.create_swap(urls[0], faces[:1], urls[1])
            return faces, await api.download(await api.wait_for_swap(job_id))

    faces, result = asyncio.run(go())
    assert len(faces) == 1 and faces[0].width > 50
    assert result[:2] == b"\xff\xd8"
    assert fake_maxstudio.stats.jobs_created == 1


def test_swap_retry_after_429_creates_no_second_job(fake_maxstudio, urls):
    fake_maxstudio.faults.scripted = [429]
    fake_maxstudio.faults.retry_after = "1"
    started = time.monotonic()
    asyncio.run(swap_once(fake_maxstudio.resource(), urls))
    assert time.monotonic() - started >= 1.0, "Retry-After must be a floor for the backoff"
    assert fake_maxstudio.stats.faults[429] == 1
    assert fake_maxstudio.stats.jobs_created == 1
    assert fake_maxstudio.stats.requests["POST /swap-image"] == 2


def test_503_on_create_and_poll_is_retried_without_a_second_job(fake_maxstudio, urls):
    fake_maxstudio.faults.scripted = [503, 503]
    asyncio.run(swap_once(fake_maxstudio.resource(), urls))
    assert fake_maxstudio.stats.jobs_created == 1


@pytest.mark.parametrize("status", [500, 502, 504])
def test_other_5xx_on_create_is_ambiguous_and_not_sent_again(fake_maxstudio, urls, status):
    fake_maxstudio.faults.scripted = [status]
    with pytest.raises(AmbiguousRequestError, match=f"HTTP {status} after the request was sent"):
        asyncio.run(swap_once(fake_maxstudio.resource(), urls))
    assert fake_maxstudio.stats.requests["POST /swap-image"] == 1


def test_ambiguous_create_is_not_retried(fake_maxstudio, urls):
    fake_maxstudio.faults.create_hang_s = 1.0
    with pytest.raises(AmbiguousRequestError, match="may have been accepted"):
        asyncio.run(swap_once(fake_maxstudio.resource(read_timeout_s=0.3), urls))
    assert fake_maxstudio.stats.requests["POST /swap-image"] == 1
    assert fake_maxstudio.stats.jobs_created == 1


def test_failed_job_raises_with_the_providers_reason(fake_maxstudio, urls):
    fake_maxstudio.faults.fail_next_jobs = 1
    with pytest.raises(JobFailedError, match="face too small to swap"):
        asyncio.run(swap_once(fake_maxstudio.resource(), urls))


@pytest.mark.parametrize(
    ("malformed", "error", "message"),
    [
        ("non_json_create", ApiError, "POST /swap-image: answer is not JSON"),
        ("missing_job_id", ApiError, "answer has no 'jobId'"),
        ("unknown_status", JobTimeoutError, "last status 'teleporting'"),
        ("result_404", ApiError, "result download: HTTP 404"),
    ],
)
def test_malformed_answers_give_clear_errors(fake_maxstudio, urls, malformed, error, message):
    fake_maxstudio.faults.malformed = malformed
    with pytest.raises(error, match=message):
        asyncio.run(swap_once(fake_maxstudio.resource(job_timeout_s=0.5), urls))


def test_max_concurrency_bounds_simultaneous_requests(fake_maxstudio, urls):
    fake_maxstudio.faults.request_latency_s = 0.05

    async def go():
        async with fake_maxstudio.resource(max_concurrency=3).client() as api:
            job_id = await api.create_swap(urls[0], [BOX], urls[1])
            await asyncio.gather(*(api.api.call("GET", f"/swap-image/{job_id}") for _ in range(15)))

    asyncio.run(go())
    assert fake_maxstudio.stats.max_in_flight == 3


def test_enhance_round_trip_returns_the_image_bytes(fake_maxstudio, urls):
    async def go():
        async with fake_maxstudio.resource().client() as api:
            return await api.wait_for_enhance(await api.create_enhance(b"\xff\xd8jpeg-bytes"))

    assert asyncio.run(go()) == b"\xff\xd8jpeg-bytes"


def test_live_client_without_key_fails_before_any_call(fake_maxstudio):
    with pytest.raises(MissingCredentialError, match="MAXSTUDIO_API_KEY"):
        fake_maxstudio.resource(api_key=None).client()
    assert sum(fake_maxstudio.stats.requests.values()) == 0


def test_key_echoed_by_the_server_is_redacted_from_errors(fake_maxstudio, urls):
    fake_maxstudio.faults.echo_key_in_errors = True
    sentinel = "sk-SENTINEL-0123456789"
    with pytest.raises(ApiError) as raised:
        asyncio.run(swap_once(fake_maxstudio.resource(api_key=sentinel), urls))
    assert raised.value.status == 401
    assert sentinel not in str(raised.value) and "***" in str(raised.value)


def test_a_bearer_token_echoed_without_its_scheme_is_redacted_too():
    token = "tok-SENTINEL-9876543210"

    def echo(request: httpx.Request) -> httpx.Response:  # a service quoting the bare key back
        return httpx.Response(403, text=f"key {request.headers['Authorization'].split()[-1]} lacks a scope")

    async def call() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with JsonApiClient("svc", "http://127.0.0.1:9", headers, transport=httpx.MockTransport(echo)) as api:
            await api.call("GET", "/thing")

    with pytest.raises(ApiError) as raised:
        asyncio.run(call())
    assert token not in str(raised.value) and "key *** lacks a scope" in str(raised.value)
