"""The worker's `generate` command: its job contract, the stand-in generator, the diffusers call sequence
(against stand-ins for torch and diffusers, which exist only in the worker image), and the command run as
a real subprocess under Dagster Pipes: images uploaded as they finish, per-image and per-checkpoint
reports, skip of stored images."""

import importlib
import json
import struct
import subprocess
import sys
import types
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image

from modelcrew_assets.resources.gpu import LocalGpuResource, SimulatedGpuResource, WorkerFailedError
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.worker import generate
from modelcrew_assets.worker.generate import lora_groups
from modelcrew_assets.worker.jobs import JobError, RenderJob
from modelcrew_assets.worker.messages import CHECKPOINT_SCORE, IMAGE, RESULT
from modelcrew_assets.worker.renderers import DiffusersRenderer
from modelcrew_assets.worker.scoring import load_embedder
from modelcrew_assets.worker.stand_in_generator import (
    StandInGenerator,
    StandInRequest,
    copy_weight,
    likeness,
    lora_step,
)
from modelcrew_assets.worker.train import WorkerError
from modelcrew_assets_tests.builders import jpeg_bytes, target_variants

LORA_PREFIX = "models/m/lora_checkpoints/r1/"


def lora_bytes(step: int | None) -> bytes:
    """A tiny but valid safetensors file with kohya's ss_steps metadata."""
    header = {"lora_unet_x.alpha": {"dtype": "F16", "shape": [], "data_offsets": [0, 2]}}
    if step is not None:
        header["__metadata__"] = {"ss_steps": str(step), "ss_network_dim": "16"}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"\x00\x3c"


def job(index: int, **overrides) -> RenderJob:
    values = dict(
        id=f"j{index}", prompt=f"prompt {index % 2}", negative_prompt="blurry", seed=100 + index // 2, width=384,
        height=384, steps=30, cfg=7.0, sampler="dpmpp_2m_karras", output_key=f"out/e1/j{index}.png",
    )  # fmt: skip
    return RenderJob(**{**values, **overrides})


def test_job_from_a_callers_dict_ignores_its_bookkeeping_and_round_trips():
    data = {**job(0, lora_key="a.safetensors", tags={"step": "250"}).as_dict(), "index": 7, "platform": "tiktok"}
    parsed = RenderJob.from_mapping(data)
    assert parsed == job(0, lora_key="a.safetensors", tags={"step": "250"})
    assert RenderJob.from_mapping(parsed.as_dict()) == parsed


def test_job_errors_name_the_job_and_the_problem():
    with pytest.raises(JobError, match="job j0: missing output_key, seed"):
        RenderJob.from_mapping({k: v for k, v in job(0).as_dict().items() if k not in ("seed", "output_key")})
    with pytest.raises(JobError, match="job j1: sampler 'k_lms' is unknown; use one of euler, euler_a"):
        job(1, sampler="k_lms")
    with pytest.raises(JobError, match="job j2: 1001x1024 must be multiples of 8"):
        job(2, width=1001, height=1024)


def test_jobs_are_grouped_by_lora_in_order_of_first_appearance():
    jobs = [job(0, lora_key="b"), job(1, lora_key="a"), job(2, lora_key="b"), job(3)]
    assert [(key, [j.id for j in group]) for key, group in lora_groups(jobs)] == [
        ("b", ["j0", "j2"]), ("a", ["j1"]), (None, ["j3"]),
    ]  # fmt: skip


def test_lora_step_comes_from_ss_steps_then_from_the_file_name(tmp_path):
    with_metadata = tmp_path / "m-step00000250.safetensors"
    with_metadata.write_bytes(lora_bytes(1000))
    by_name = tmp_path / "m-step00000750.safetensors"
    by_name.write_bytes(lora_bytes(None))
    assert (lora_step(with_metadata), lora_step(by_name), lora_step(None)) == (1000, 750, None)


def test_stand_in_likeness_and_copying_follow_the_step_in_a_known_way():
    assert [likeness(step, True) for step in (250, 500, 750, 1500)] == [0.0, 0.25, 1.0, 1.0]
    assert likeness(1000, False) == 0.0 and likeness(None, True) == 1.0
    assert [copy_weight(step) for step in (750, 1000, 1125, 1250, 1500)] == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_stand_in_is_deterministic_and_differs_by_prompt_and_seed(astronaut):
    generator = StandInGenerator([astronaut], [])
    request = StandInRequest("a portrait", 5, 256, 320, 1.0, 750, True)
    first, again = generator.render(request), generator.render(request)
    assert first.size == (256, 320)
    assert first.tobytes() == again.tobytes()
    assert generator.render(StandInRequest("a beach", 5, 256, 320, 1.0, 750, True)).tobytes() != first.tobytes()
    assert generator.render(StandInRequest("a portrait", 6, 256, 320, 1.0, 750, True)).tobytes() != first.tobytes()


def test_overfit_stand_in_returns_the_same_training_photo_for_every_prompt(astronaut):
    training = target_variants(astronaut, 3)
    generator = StandInGenerator([astronaut], training)
    a = generator.render(StandInRequest("a portrait", 4, 256, 256, 1.0, 1500, True))
    b = generator.render(StandInRequest("a beach at night", 4, 256, 256, 1.0, 1500, True))
    pixels = lambda image: list(image.crop((0, 40, 256, 256)).getdata())  # noqa: E731 (below the label)
    assert pixels(a) == pixels(b)


PEFT_REQUIRED = "PEFT backend is required for this method."  # diffusers' words (lora_pipeline.py)


class FakePipeline:
    """Records how DiffusersRenderer drives an SDXL pipeline; like diffusers, it loads LoRAs only with its
    PEFT backend on (USE_PEFT_BACKEND: peft installed at diffusers' MIN_PEFT_VERSION or later)."""

    calls: list = []
    peft_backend = True

    def __init__(self):
        self.scheduler = types.SimpleNamespace(config={"base": True})

    @classmethod
    def from_single_file(cls, path, torch_dtype):
        cls.calls.append(("from_single_file", path, torch_dtype))
        return cls()

    @classmethod
    def from_pretrained(cls, path, torch_dtype):
        cls.calls.append(("from_pretrained", path, torch_dtype))
        return cls()

    def to(self, device):
        self.calls.append(("to", device))
        return self

    def load_lora_weights(self, folder, weight_name):
        if not self.peft_backend:
            raise ValueError(PEFT_REQUIRED)
        self.calls.append(("load_lora_weights", folder, weight_name))

    def unload_lora_weights(self):
        self.calls.append(("unload_lora_weights",))

    def __call__(self, **kwargs):
        self.calls.append(("render", kwargs))
        return types.SimpleNamespace(images=[Image.new("RGB", (kwargs["width"], kwargs["height"]))])


class FakeScheduler:
    @classmethod
    def from_config(cls, config, **options):
        FakePipeline.calls.append(("scheduler", cls.__name__, dict(config), options))
        return cls()


def install_fake_diffusers(monkeypatch, peft_backend: bool = True, cuda: bool = True) -> list:
    FakePipeline.calls = []
    FakePipeline.peft_backend = peft_backend

    class Generator:
        def __init__(self, device):
            self.device = device

        def manual_seed(self, seed):
            self.seed = seed
            return self

    cuda_module = types.SimpleNamespace(is_available=lambda: cuda)
    torch = types.SimpleNamespace(float16="float16", float32="float32", Generator=Generator, cuda=cuda_module)
    schedulers = {
        name: type(name, (FakeScheduler,), {})
        for name in ("DPMSolverMultistepScheduler", "EulerAncestralDiscreteScheduler")
    }
    utils = types.SimpleNamespace(
        USE_PEFT_BACKEND=peft_backend, MIN_PEFT_VERSION="0.6.0", is_peft_available=lambda: peft_backend
    )
    diffusers = types.SimpleNamespace(
        StableDiffusionXLPipeline=FakePipeline, utils=utils, __version__="0.32.1", **schedulers
    )
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "diffusers", diffusers)
    monkeypatch.setitem(sys.modules, "diffusers.utils", utils)
    return FakePipeline.calls


@pytest.fixture
def fake_diffusers(monkeypatch):
    return install_fake_diffusers(monkeypatch)


def test_diffusers_renderer_loads_the_base_once_and_each_lora_in_turn(fake_diffusers, tmp_path):
    base = tmp_path / "sd_xl_base_1.0.safetensors"
    base.write_bytes(b"x")
    renderer = DiffusersRenderer(str(base))
    renderer.load_lora(tmp_path / "lora" / "m-step00000250.safetensors")
    renderer.render(job(0, lora_weight=0.8))
    renderer.render(job(1, lora_weight=0.8))
    renderer.load_lora(tmp_path / "lora" / "m-step00000500.safetensors")
    renderer.render(job(2, sampler="euler_a", lora_weight=1.0))
    renderer.load_lora(None)
    names = [call[0] for call in fake_diffusers]
    assert names == [
        "from_single_file", "to", "load_lora_weights", "scheduler", "render", "render", "unload_lora_weights",
        "load_lora_weights", "scheduler", "render", "unload_lora_weights",
    ]  # fmt: skip
    assert fake_diffusers[0] == ("from_single_file", str(base), "float16") and fake_diffusers[1] == ("to", "cuda")
    assert fake_diffusers[2] == ("load_lora_weights", str(tmp_path / "lora"), "m-step00000250.safetensors")
    assert fake_diffusers[3] == (
        "scheduler",
        "DPMSolverMultistepScheduler",
        {"base": True},
        {"use_karras_sigmas": True},
    )
    first = fake_diffusers[4][1]
    assert (first["prompt"], first["negative_prompt"], first["width"], first["height"]) == (
        "prompt 0",
        "blurry",
        384,
        384,
    )
    assert (first["num_inference_steps"], first["guidance_scale"], first["generator"].seed) == (30, 7.0, 100)
    assert first["cross_attention_kwargs"] == {"scale": 0.8}
    assert fake_diffusers[8][1] == "EulerAncestralDiscreteScheduler"


def test_diffusers_renderer_takes_a_diffusers_folder_with_from_pretrained(fake_diffusers, tmp_path):
    renderer = DiffusersRenderer(str(tmp_path))
    renderer.render(job(0))
    assert fake_diffusers[0][0] == "from_pretrained"
    assert fake_diffusers[-1][1]["cross_attention_kwargs"] is None  # no LoRA loaded: base model only


def test_without_the_peft_backend_the_renderer_refuses_to_start_before_loading_the_base(monkeypatch, tmp_path):
    calls = install_fake_diffusers(monkeypatch, peft_backend=False)
    with pytest.raises(WorkerError, match="cannot load LoRAs") as refused:
        DiffusersRenderer(str(tmp_path))
    assert "peft is not installed" in str(refused.value) and "deploy/worker/Dockerfile" in str(refused.value)
    assert calls == []  # nothing loaded: no minute spent on the base model of a run that cannot finish


def test_the_renderer_runs_float16_on_cuda_and_float32_on_cpu(monkeypatch, tmp_path):
    calls = install_fake_diffusers(monkeypatch, cuda=False)
    renderer = DiffusersRenderer(str(tmp_path))
    renderer.render(job(0))
    assert calls[:2] == [("from_pretrained", str(tmp_path), "float32"), ("to", "cpu")]
    assert calls[-1][1]["generator"].device == "cpu"
    calls = install_fake_diffusers(monkeypatch, cuda=True)
    DiffusersRenderer(str(tmp_path))
    assert calls[:2] == [("from_pretrained", str(tmp_path), "float16"), ("to", "cuda")]


def test_importing_the_worker_pulls_in_neither_torch_diffusers_nor_dagster():
    code = "import sys, modelcrew_assets.worker.__main__; print(sorted({'torch', 'diffusers', 'dagster'} & set(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def seed_inputs(root: Path, astronaut: Image.Image) -> dict:
    def put(key: str, data: bytes) -> str:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
        return key

    face = put("uploads/m/face/face.jpg", jpeg_bytes(astronaut))
    training = [
        put(f"models/m/swapped_faces/t{i}.jpg", jpeg_bytes(image))
        for i, image in enumerate(target_variants(astronaut, 3))
    ]
    for step in (250, 750, 1500):
        put(f"{LORA_PREFIX}m-step{step:08d}.safetensors", lora_bytes(step))
    return {"face_keys": [face], "training_keys": training}


def eval_jobs() -> list[dict]:
    jobs = []
    for step in (250, 750, 1500):
        for index in range(4):
            jobs.append(
                job(
                    index, id=f"s{step}-{index}", output_key=f"out/e1/step{step}/{index}.png",
                    lora_key=f"{LORA_PREFIX}m-step{step:08d}.safetensors", tags={"step": str(step)},
                ).as_dict()
            )  # fmt: skip
    return jobs


def run_worker(extras: dict, root: Path, command: str = "generate") -> tuple[list[dict], str | None]:
    """`python -m modelcrew_assets.worker <command>` as a local process under Pipes (LocalGpuResource), from
    inside an asset; returns the worker's custom messages and the executor's error, if any."""
    collected: dict[str, object] = {"error": None}

    @dg.asset
    def evaluation(context: dg.AssetExecutionContext, gpu: LocalGpuResource, storage: StorageResource):
        try:
            run = gpu.run(context, worker_args=[command], extras=extras, storage=storage)
        except WorkerFailedError as failure:
            run, collected["error"] = failure.run, str(failure)
        collected["messages"] = [message.model_dump() for message in run.messages]
        return dg.MaterializeResult()

    resources = {
        "gpu": SimulatedGpuResource(poll_seconds=0.05, pipes_poll_seconds=0.05),
        "storage": StorageResource(url=f"file://{root}"),
    }
    with dg.instance_for_test() as instance:
        dg.materialize([evaluation], resources=resources, instance=instance)
    return collected["messages"], collected["error"]


def test_generate_uploads_each_image_reports_it_and_scores_each_checkpoint(tmp_path, astronaut):
    root = tmp_path / "storage"
    references = seed_inputs(root, astronaut)
    extras = {
        "storage_url": f"file://{root}",
        "generator": "stand_in",
        "jobs": eval_jobs(),
        "references": references,
        "score": True,
    }
    messages, error = run_worker(extras, root)
    assert error is None
    kinds = [m["type"] for m in messages]
    assert kinds == ([IMAGE] * 4 + [CHECKPOINT_SCORE]) * 3 + [RESULT]  # each image reported when done
    images = [m for m in messages if m["type"] == IMAGE]
    for message in images:
        stored = root / message["key"]
        assert stored.is_file() and message["size"] == stored.stat().st_size and len(message["sha256"]) == 64
        assert Image.open(stored).size == (384, 384)
    assert images[0]["tags"] == {"step": "250"} and images[0]["skipped"] is False
    scores = {m["lora_key"].rsplit("step", 1)[1]: m for m in messages if m["type"] == CHECKPOINT_SCORE}
    underfit, good, overfit = (
        scores["00000250.safetensors"],
        scores["00000750.safetensors"],
        scores["00001500.safetensors"],
    )
    assert underfit["face_detection_rate"] < 0.5 and underfit["identity"] < 0.5
    assert good["face_detection_rate"] == 1.0 and good["identity"] > 0.5 and good["memorization"] < 0.6
    assert overfit["memorization"] > 0.95 and overfit["cross_prompt_similarity"] > 0.95
    assert good["embedder"] == load_embedder().name and len(good["samples"]) == 4  # this box's default
    assert messages[-1]["ok"] is True and messages[-1]["rendered"] == 12 and messages[-1]["generator"] == "stand_in"


def test_generate_skips_images_already_stored(tmp_path, astronaut):
    root = tmp_path / "storage"
    references = seed_inputs(root, astronaut)
    jobs = eval_jobs()[:4]
    extras = {"storage_url": f"file://{root}", "generator": "stand_in", "jobs": jobs, "references": references}
    run_worker({**extras, "jobs": jobs[:2]}, root)
    before = {j["output_key"]: (root / j["output_key"]).stat().st_mtime_ns for j in jobs[:2]}
    messages, error = run_worker({**extras, "skip_existing": True}, root)
    assert error is None
    images = [m for m in messages if m["type"] == IMAGE]
    assert [m["skipped"] for m in images] == [True, True, False, False]
    assert [m["sha256"] is None for m in images] == [True, True, False, False]  # not even downloaded
    assert {key: (root / key).stat().st_mtime_ns for key in before} == before
    assert (messages[-1]["rendered"], messages[-1]["skipped"]) == (2, 2)


def hide_packages(monkeypatch, folder: Path, *names: str) -> None:
    """Worker subprocesses started after this cannot import `names`, as on a box without them: a
    sitecustomize on PYTHONPATH marks them absent in sys.modules before anything runs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"import sys\nsys.modules.update(dict.fromkeys({list(names)!r}))\n")
    monkeypatch.setenv("PYTHONPATH", str(folder))


def test_diffusers_without_torch_fails_with_a_clear_result_and_no_image(tmp_path, astronaut, monkeypatch):
    hide_packages(monkeypatch, tmp_path / "no-torch", "torch")
    root = tmp_path / "storage"
    references = seed_inputs(root, astronaut)
    extras = {
        "storage_url": f"file://{root}",
        "generator": "diffusers",
        "jobs": eval_jobs()[:1],
        "references": references,
    }
    messages, error = run_worker(extras, root)
    assert "needs torch and diffusers" in error
    result = messages[-1]
    assert result["type"] == RESULT and result["ok"] is False
    assert "needs torch and diffusers" in result["error"] and "MODELCREW_DRY_RUN=1" in result["error"]
    assert not (root / "out").exists()


def test_repeated_job_ids_are_refused_before_anything_is_rendered(tmp_path, astronaut):
    root = tmp_path / "storage"
    references = seed_inputs(root, astronaut)
    jobs = eval_jobs()[:2]
    jobs[1]["id"] = jobs[0]["id"]
    messages, _ = run_worker(
        {"storage_url": f"file://{root}", "generator": "stand_in", "jobs": jobs, "references": references}, root
    )
    assert "job ids must be unique; repeated: s250-0" in messages[-1]["error"]
    assert not (root / "out").exists()


def test_generate_command_is_registered_with_the_worker():
    from modelcrew_assets.worker.__main__ import COMMANDS

    assert importlib.import_module(COMMANDS["generate"]).run is generate.run
