"""scripts/gpu_smoke.sh: fails fast off a GPU box; its pure parts; its wiring, with the stand-ins."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from modelcrew_assets.worker import smoke

REPO = Path(__file__).parents[1]


def test_gpu_smoke_script_fails_fast_naming_what_is_missing(tmp_path: Path):
    env = {"PATH": "/usr/bin:/bin", "MODELCREW_PYTHON": sys.executable, "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_smoke.sh")],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == smoke.EXIT_NOT_READY, done.stdout + done.stderr
    assert "nvidia-smi is not on PATH" in done.stdout
    assert "MODELCREW_TRAINER_LAUNCH is not set" in done.stdout and "MODELCREW_BASE_MODEL is not set" in done.stdout


def test_preflight_checks_gpu_trainer_and_base_model(tmp_path: Path):
    script = tmp_path / "sdxl_train_network.py"
    base = tmp_path / "sd_xl_base_1.0.safetensors"
    fake_smi = tmp_path / "nvidia-smi"
    fake_smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-1)'\n")
    fake_smi.chmod(0o755)
    which = {"nvidia-smi": str(fake_smi)}.get
    env = {"MODELCREW_TRAINER_LAUNCH": f"accelerate launch {script}", "MODELCREW_BASE_MODEL": str(base)}
    problems = smoke.preflight(env, which)
    assert problems == [
        f"MODELCREW_TRAINER_LAUNCH names {script}, which does not exist",
        f"MODELCREW_BASE_MODEL is {base}, which does not exist",
    ]
    script.write_text("")
    base.write_bytes(b"")
    assert smoke.preflight(env, which) == []
    fake_smi.write_text("#!/bin/sh\necho 'No devices were found' >&2\nexit 6\n")
    assert smoke.preflight(env, which) == ["nvidia-smi lists no GPU (No devices were found)"]


def test_figures_come_from_the_workers_progress_logs_and_image_messages():
    lines = [
        "step 1/20 avr_loss=0.2 elapsed 00:03 remaining 00:40",
        "step 10/20 avr_loss=0.1 elapsed 00:12 remaining 00:10",
        "step 11/20 avr_loss=0.1 elapsed 00:25 remaining 00:09",  # after sampling at 10
        "step 20/20 avr_loss=0.1 elapsed 00:34 remaining 00:00",
    ]
    assert smoke.seconds_per_step(lines, after_step=10) == 1.0
    assert smoke.seconds_per_step(lines[:1]) is None
    images = [{"seconds": 3.0}, {"seconds": 5.0}, {"seconds": 4.0}, {"seconds": 4.0}]
    assert smoke.images_per_minute(images) == 15.0


def test_tiny_dataset_is_laid_out_like_kohya_dataset():
    with zipfile.ZipFile(io.BytesIO(smoke.tiny_dataset(count=2, side=64))) as bundle:
        names = sorted(bundle.namelist())
    assert names == [f"img/{smoke.FOLDER}/000.jpg", f"img/{smoke.FOLDER}/000.txt", f"img/{smoke.FOLDER}/001.jpg", f"img/{smoke.FOLDER}/001.txt"]  # fmt: skip


def test_smoke_runs_train_then_generate_through_a_local_pipes_session(tmp_path: Path):
    """The wiring on CPU: the stand-in trainer in place of kohya, the stand-in generator in place of SDXL."""
    env = {
        "MODELCREW_TRAINER_LAUNCH": f"{sys.executable} -m modelcrew_assets.worker.stand_in_trainer",
        "MODELCREW_BASE_MODEL": str(tmp_path / "base.safetensors"),
        "MODELCREW_STANDIN_STEP_SECONDS": "0.05",
        "OMP_NUM_THREADS": "1",
    }
    figures = smoke.smoke(tmp_path, {**env, "PATH": os.environ["PATH"]}, generator="stand_in")
    assert figures.checkpoint_key == "lora/smoke-step00000020.safetensors"
    assert figures.images == smoke.IMAGES and figures.images_per_minute > 0
    assert figures.seconds_per_step is not None and figures.seconds_per_step < 1
    assert len(list((tmp_path / "storage" / "render").glob("*.png"))) == smoke.IMAGES
    assert any(line.startswith("s/step: ") for line in figures.lines())
