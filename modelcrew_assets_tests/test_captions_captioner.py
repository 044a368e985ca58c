"""CaptionerResource against the fake OpenAI-compatible server: requests, concurrency, errors."""

import asyncio
import base64
import io
import time

import pytest
from PIL import Image

from modelcrew_assets.resources.captioner import CaptionerResource, SimulatedCaptionerResource
from modelcrew_assets.resources.http_api import ApiError
from modelcrew_assets.settings import MissingCredentialError
from modelcrew_assets_tests.builders import jpeg_bytes
from modelcrew_assets_tests.fakes.openai_compatible import (
    FAKE_MODEL,
    REASONING_TOKENS,
    Reply,
    malformed_json,
    running_fake,
)


def caption_all(captioner: CaptionerResource, images: list[bytes]) -> list[str]:
    async def run() -> list[str]:
        async with captioner.session() as session:
            return await asyncio.gather(
                *(session.caption(data, f"image-{i}.jpg", "system", "instruction") for i, data in enumerate(images))
            )

    return asyncio.run(run())


def test_request_carries_the_model_the_bearer_key_and_a_downscaled_jpeg_data_uri(fake_openai, astronaut):
    captioner = CaptionerResource(base_url=fake_openai.base_url, api_key=fake_openai.api_key, model=FAKE_MODEL)
    big = astronaut.resize((2048, 2048))

    assert caption_all(captioner.model_copy(update={"image_max_side": 256}), [jpeg_bytes(big)]) == [
        fake_openai.default_caption
    ]

    request = fake_openai.requests[0]
    assert request["model"] == FAKE_MODEL
    assert request["messages"][0] == {"role": "system", "content": "system"}
    url = request["messages"][1]["content"][1]["image_url"]["url"]
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (256, 256)


def test_captioner_sends_at_least_eight_requests_at_once(astronaut):
    with running_fake(latency_s=0.3) as fake:
        captioner = CaptionerResource(base_url=fake.base_url, api_key=fake.api_key, model=FAKE_MODEL)
        started = time.perf_counter()
        caption_all(captioner, [jpeg_bytes(astronaut.resize((128, 128)))] * 24)
        elapsed = time.perf_counter() - started
    assert fake.max_in_flight == 8
    # Three rounds of 0.3 s plus start-up on a busy machine; one at a time would take 7.2 s.
    assert elapsed < 7.2 / 2


def test_wrong_api_key_fails_at_once_without_echoing_the_key(fake_openai, astronaut):
    captioner = CaptionerResource(base_url=fake_openai.base_url, api_key="wrong-secret-key", model=FAKE_MODEL)
    with pytest.raises(ApiError, match="HTTP 401") as error:
        caption_all(captioner, [jpeg_bytes(astronaut)])
    assert "wrong-secret-key" not in str(error.value)


def test_an_endpoint_that_only_answers_garbage_fails_naming_the_image(fake_openai, astronaut):
    captioner = CaptionerResource(
        base_url=fake_openai.base_url, api_key=fake_openai.api_key, model=FAKE_MODEL, retry_base_delay_s=0.01
    )
    fake_openai.script(malformed_json(), malformed_json(), malformed_json())
    with pytest.raises(ApiError, match=r"image-0\.jpg: no usable caption after 3 answers"):
        caption_all(captioner, [jpeg_bytes(astronaut)])


def test_live_captioner_without_a_model_names_the_variable(fake_openai):
    with pytest.raises(MissingCredentialError, match="CAPTION_MODEL"):
        CaptionerResource(base_url=fake_openai.base_url).session()


def test_dry_run_or_no_base_url_disables_the_endpoint(fake_openai):
    assert not CaptionerResource().enabled
    assert not SimulatedCaptionerResource().enabled
    with pytest.raises(RuntimeError, match="not enabled"):
        SimulatedCaptionerResource().session()


def sent_image_bytes(fake) -> bytes:
    return base64.b64decode(fake.requests[-1]["messages"][1]["content"][1]["image_url"]["url"].split(",", 1)[1])


def test_small_upright_jpeg_is_sent_unchanged_and_a_rotated_one_is_turned_upright(fake_openai, astronaut):
    captioner = CaptionerResource(base_url=fake_openai.base_url, api_key=fake_openai.api_key, model=FAKE_MODEL)
    upright = jpeg_bytes(astronaut)
    caption_all(captioner, [upright])
    assert sent_image_bytes(fake_openai) == upright

    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    astronaut.resize((200, 100)).save(buffer, format="JPEG", exif=exif)
    caption_all(captioner, [buffer.getvalue()])
    assert Image.open(io.BytesIO(sent_image_bytes(fake_openai))).size == (100, 200)


def reasoning_captioner(fake, **settings) -> CaptionerResource:
    return CaptionerResource(base_url=fake.base_url, api_key=fake.api_key, model=FAKE_MODEL, **settings)


def test_a_reasoning_model_is_sent_max_completion_tokens_and_no_temperature_when_configured(astronaut):
    with running_fake(reasoning_model=True) as fake:
        captioner = reasoning_captioner(fake, token_parameter="max_completion_tokens")
        assert caption_all(captioner, [jpeg_bytes(astronaut)]) == [fake.default_caption]
    request = fake.requests[-1]
    assert "max_tokens" not in request and "temperature" not in request
    # Room for the model's reasoning as well as the caption, which would otherwise come back empty.
    assert request["max_completion_tokens"] >= REASONING_TOKENS + captioner.max_answer_tokens
    assert fake.rejected == []


def test_a_reasoning_model_behind_the_default_settings_is_learnt_once_for_all_concurrent_requests(astronaut):
    with running_fake(latency_s=0.05, reasoning_model=True) as fake:
        captions = caption_all(reasoning_captioner(fake), [jpeg_bytes(astronaut.resize((128, 128)))] * 24)
    assert captions == [fake.default_caption] * 24
    # The first request found out alone (a 400 for max_tokens, then one for temperature); the other 23 were
    # built with what it learnt, and none was sent more than once per unsupported parameter.
    assert [("max_tokens" in r, "temperature" in r) for r in fake.rejected] == [(True, True), (False, True)]
    assert len(fake.requests) == 24
    assert all("max_tokens" not in r and "temperature" not in r for r in fake.requests)


def test_vllm_and_ollama_keep_max_tokens_and_temperature(fake_openai, astronaut):
    caption_all(reasoning_captioner(fake_openai), [jpeg_bytes(astronaut)])
    request = fake_openai.requests[-1]
    assert request["max_tokens"] == 200 and request["temperature"] == 0.2 and "max_completion_tokens" not in request


def test_a_400_about_some_other_parameter_fails_at_once(fake_openai, astronaut):
    body = b'{"error": {"message": "Unsupported parameter: \'messages\' is not supported with this model.", "type": "invalid_request_error", "param": "messages", "code": "unsupported_parameter"}}'
    fake_openai.script(Reply(400, raw_body=body))
    with pytest.raises(ApiError, match="HTTP 400"):
        caption_all(reasoning_captioner(fake_openai), [jpeg_bytes(astronaut)])
    assert fake_openai.requests and len(fake_openai.requests) == 1
