"""The real-model tier: the worker's DiffusersRenderer on a tiny SDXL (random weights, built here, no hub
download) with a LoRA trained on it and saved in kohya's key format, on CPU. It fails if loading a kohya LoRA,
its weight, unloading, a sampler or seeding breaks, and runs `worker generate` / `worker batch` end to end
with real diffusers. Needs the `models` extra (torch, diffusers, transformers, peft); CI installs it, so
there a missing package fails the tier instead of skipping it."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

# torch and safetensors are imported here; diffusers, transformers and peft only looked up, by the fixture
# below: importing them costs every pytest worker 3 s of CPU at collection, and most never run this tier.
if not os.environ.get("CI"):
    for package in ("torch", "safetensors"):
        pytest.importorskip(package, reason="the real-model tier needs pip install -e '.[dev,models]'")

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from modelcrew_assets.generated_batches.prompt_packs import image_key, record_key
from modelcrew_assets.object_store import file_sha256
from modelcrew_assets.worker.jobs import SAMPLERS, RenderJob
from modelcrew_assets.worker.messages import CHECKPOINT_SCORE, GENERATED_IMAGE, IMAGE, RESULT
from modelcrew_assets.worker.renderers import DiffusersRenderer
from modelcrew_assets_tests.builders import jpeg_bytes
from modelcrew_assets_tests.test_generate import hide_packages, run_worker
from modelcrew_assets_tests.tiny_sdxl import build_tiny_sdxl, train_kohya_lora

pytestmark = pytest.mark.models
LORA_KEY = "models/m/lora_checkpoints/r1/m-step00000006.safetensors"
# kohya's networks/lora.py: prefix + module path with '.' as '_', then lora_down / lora_up / alpha.
KOHYA_KEY = re.compile(r"lora_(unet|te1|te2)_[a-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)")


@pytest.fixture(scope="module", autouse=True)
def models_extra():
    missing = [name for name in ("diffusers", "transformers", "peft") if importlib.util.find_spec(name) is None]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"the real-model tier needs pip install -e '.[dev,models]' (missing: {', '.join(missing)})")


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    # Two threads on two shared cores ran 10x slower than one.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory):
    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture(scope="session")
def kohya_lora(tiny_sdxl, tmp_path_factory):
    return train_kohya_lora(tiny_sdxl, tmp_path_factory.mktemp("lora") / "m-step00000006.safetensors")


@pytest.fixture(scope="module")
def renderer(tiny_sdxl):
    return DiffusersRenderer(str(tiny_sdxl))


def job(**overrides) -> RenderJob:
    values = {
        "id": "j0", "prompt": "a photo of sks person", "negative_prompt": "blurry", "seed": 7, "width": 256, "height": 256,
        "steps": 4, "cfg": 5.0, "sampler": "euler", "output_key": "out/j0.png",
    }  # fmt: skip
    return RenderJob(**{**values, **overrides})


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def tuner_layers(module: torch.nn.Module) -> int:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(isinstance(layer, BaseTunerLayer) for layer in module.modules())


def test_the_lora_file_is_in_kohyas_sdxl_key_format(kohya_lora):
    keys = list(load_file(kohya_lora))
    with safe_open(str(kohya_lora), "pt") as lora:
        metadata = lora.metadata()
    assert keys and all(KOHYA_KEY.fullmatch(key) for key in keys), [k for k in keys if not KOHYA_KEY.fullmatch(k)][:3]
    unet = {key.split(".")[0] for key in keys if key.startswith("lora_unet_")}
    assert all(re.match(r"lora_unet_(input_blocks|middle_block|output_blocks)_\d", name) for name in unet)
    assert any(key.startswith("lora_te1_text_model_encoder_layers_") for key in keys)
    assert any(key.startswith("lora_te2_text_model_encoder_layers_") for key in keys)
    assert metadata["ss_network_dim"] == "4" and metadata["ss_steps"] == "6"


def test_the_renderer_loads_the_tiny_sdxl_in_float32_on_cpu_and_seeds_reproduce(renderer):
    assert (renderer.device, renderer.dtype, renderer.base_model) == ("cpu", torch.float32, "tiny-sdxl")
    first = renderer.render(job())
    assert first.size == (256, 256) and pixels(first).std() > 1  # an image, not a flat fill
    assert renderer.render(job()).tobytes() == first.tobytes()
    assert renderer.render(job(seed=8)).tobytes() != first.tobytes()
    assert renderer.render(job(width=192, height=320)).size == (192, 320)


def test_a_kohya_lora_changes_the_image_and_weight_zero_or_unload_give_the_base_back(renderer, kohya_lora):
    base = renderer.render(job())
    renderer.load_lora(kohya_lora)
    try:
        # Every module in the file became a LoRA layer: kohya's names were all mapped onto the pipeline.
        modules = {key.split(".")[0] for key in load_file(kohya_lora)}
        loaded = (
            tuner_layers(renderer.pipe.unet),
            tuner_layers(renderer.pipe.text_encoder),
            tuner_layers(renderer.pipe.text_encoder_2),
        )
        assert sum(loaded) == len(modules) and min(loaded) > 0
        full, half, zero = (renderer.render(job(lora_weight=weight)) for weight in (1.0, 0.5, 0.0))
    finally:
        renderer.load_lora(None)
    full_change = np.abs(pixels(full) - pixels(base)).mean()
    assert full_change > 2
    assert 0 < np.abs(pixels(half) - pixels(base)).mean() < full_change
    assert zero.tobytes() == base.tobytes()
    assert tuner_layers(renderer.pipe.unet) == 0
    assert renderer.render(job()).tobytes() == base.tobytes()


def test_loading_a_second_lora_replaces_the_first(renderer, kohya_lora, tmp_path):
    renderer.load_lora(kohya_lora)
    first = renderer.render(job())
    tensors = load_file(kohya_lora)
    with safe_open(str(kohya_lora), "pt") as lora:
        metadata = lora.metadata()
    doubled = tmp_path / "m-step00000012.safetensors"
    save_file({k: v * 2 if k.endswith("lora_up.weight") else v for k, v in tensors.items()}, doubled, metadata=metadata)
    try:
        renderer.load_lora(doubled)
        assert tuner_layers(renderer.pipe.unet) == sum(
            k.startswith("lora_unet_") for k in {k.split(".")[0] for k in tensors}
        )
        second = renderer.render(job())
    finally:
        renderer.load_lora(None)
    assert second.tobytes() != first.tobytes()


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_runs_with_a_lora_and_reproduces_its_seed(renderer, kohya_lora, sampler):
    renderer.load_lora(kohya_lora)
    try:
        image = renderer.render(job(sampler=sampler))
        again = renderer.render(job(sampler=sampler))
    finally:
        renderer.load_lora(None)
    assert image.size == (256, 256) and pixels(image).std() > 1
    assert again.tobytes() == image.tobytes()
    assert type(renderer.pipe.scheduler).__name__ == SAMPLERS[sampler][0]


def test_without_peft_the_real_renderer_refuses_to_start(tiny_sdxl, tmp_path, monkeypatch):
    """diffusers itself decides: with peft not importable its USE_PEFT_BACKEND is off."""
    hide_packages(monkeypatch, tmp_path / "no-peft", "peft")
    code = (
        "from modelcrew_assets.worker.renderers import DiffusersRenderer\n"
        "from modelcrew_assets.worker.train import WorkerError\n"
        f"try:\n    DiffusersRenderer({str(tiny_sdxl)!r})\nexcept WorkerError as error:\n    print(error)\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "cannot load LoRAs" in output.stdout and "peft is not installed" in output.stdout


@pytest.fixture
def worker_env(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub lookup would be a bug here: fail instead of waiting


def store_inputs(root, kohya_lora, astronaut) -> dict:
    (root / LORA_KEY).parent.mkdir(parents=True, exist_ok=True)
    (root / LORA_KEY).write_bytes(kohya_lora.read_bytes())
    face = root / "uploads/m/face/face.jpg"
    face.parent.mkdir(parents=True, exist_ok=True)
    face.write_bytes(jpeg_bytes(astronaut))
    return {"face_keys": ["uploads/m/face/face.jpg"], "training_keys": []}


def test_worker_generate_renders_real_diffusers_images_and_scores_them(
    tmp_path, tiny_sdxl, kohya_lora, astronaut, worker_env
):
    root = tmp_path / "storage"
    references = store_inputs(root, kohya_lora, astronaut)
    jobs = [
        job(id="lora", output_key="out/e1/lora.png", lora_key=LORA_KEY).as_dict(),
        job(id="lora-ddim", output_key="out/e1/lora-ddim.png", lora_key=LORA_KEY, sampler="ddim").as_dict(),
        job(id="base", output_key="out/e1/base.png").as_dict(),
    ]
    extras = {
        "storage_url": f"file://{root}", "generator": "diffusers", "base_model": str(tiny_sdxl), "jobs": jobs,
        "references": references, "score": True,
    }  # fmt: skip
    messages, error = run_worker(extras, root)
    assert error is None, messages[-1]
    assert [m["type"] for m in messages] == [
        IMAGE,
        IMAGE,
        CHECKPOINT_SCORE,
        IMAGE,
        CHECKPOINT_SCORE,
        RESULT,
    ]
    for message in (m for m in messages if m["type"] == IMAGE):
        stored = root / message["key"]
        assert message["sha256"] == file_sha256(stored) and Image.open(stored).size == (256, 256)
    lora, base = (Image.open(root / "out/e1/lora.png"), Image.open(root / "out/e1/base.png"))
    assert np.abs(pixels(lora.convert("RGB")) - pixels(base.convert("RGB"))).mean() > 2
    score = next(m for m in messages if m["type"] == CHECKPOINT_SCORE)
    assert score["lora_key"] == LORA_KEY and len(score["samples"]) == 2  # random weights: no face expected
    result = messages[-1]
    assert (
        result["ok"],
        result["generator"],
        result["base_model"],
        result["rendered"],
    ) == (True, "diffusers", "tiny-sdxl", 3)


def test_worker_generate_without_peft_fails_before_the_first_image(
    tmp_path, tiny_sdxl, kohya_lora, astronaut, worker_env, monkeypatch
):
    hide_packages(monkeypatch, tmp_path / "no-peft", "peft")
    root = tmp_path / "storage"
    references = store_inputs(root, kohya_lora, astronaut)
    # The base-only job comes first: the old renderer rendered it, then failed at the LoRA.
    jobs = [
        job(id="base", output_key="out/e1/base.png").as_dict(),
        job(id="lora", output_key="out/e1/lora.png", lora_key=LORA_KEY).as_dict(),
    ]
    extras = {
        "storage_url": f"file://{root}",
        "generator": "diffusers",
        "base_model": str(tiny_sdxl),
        "jobs": jobs,
        "references": references,
    }
    messages, error = run_worker(extras, root)
    assert "cannot load LoRAs" in error
    assert [m["type"] for m in messages] == [RESULT] and messages[0]["rendered"] == 0
    assert not (root / "out").exists()


def batch_jobs(count: int) -> list[dict]:
    return [
        {"index": i, "prompt": f"a photo of sks person, scene {i}", "negative_prompt": "blurry", "seed": 40 + i,
         "width": 256, "height": 192, "platform": "feed", "aspect": "4:3", "sampler": sampler, "steps": 4,
         "cfg": 5.0, "lora_weight": 0.8, "id": f"{i:04d}", "output_key": image_key("m", "b1", i),
         "record_key": record_key("m", "b1", i)}
        for i, sampler in enumerate(("euler_a", "dpmpp_2m_karras"))
    ][:count]  # fmt: skip


def test_worker_batch_renders_with_the_chosen_lora_and_skips_what_is_stored(
    tmp_path, tiny_sdxl, kohya_lora, astronaut, worker_env
):
    root = tmp_path / "storage"
    store_inputs(root, kohya_lora, astronaut)
    extras = {
        "storage_url": f"file://{root}", "output_prefix": "models/m/generated_batches/b1/", "generator": "diffusers",
        "base_model": str(tiny_sdxl), "face_keys": [], "jobs": batch_jobs(2),
        "checkpoint": {"key": LORA_KEY, "sha256": file_sha256(kohya_lora), "step": 6},
    }  # fmt: skip
    messages, error = run_worker(extras, root, command="batch")
    assert error is None, messages[-1]
    assert [m["type"] for m in messages] == [GENERATED_IMAGE, GENERATED_IMAGE, RESULT]
    for index in range(2):
        record = json.loads((root / record_key("m", "b1", index)).read_text())
        assert Image.open(root / image_key("m", "b1", index)).size == (256, 192)
        assert record["sha256"] == file_sha256(root / image_key("m", "b1", index))
        assert (record["generator"], record["base_model"], record["dry_run"]) == ("diffusers", "tiny-sdxl", False)
        assert record["checkpoint_key"] == LORA_KEY and record["lora_weight"] == 0.8
    assert (messages[-1]["rendered"], messages[-1]["generator"]) == (2, "diffusers")
    # Every image stored: the rerun needs neither the checkpoint (gone now) nor the pipeline.
    (root / LORA_KEY).unlink()
    again, error = run_worker(extras, root, command="batch")
    assert error is None and (again[-1]["rendered"], again[-1]["skipped"]) == (0, 2)
