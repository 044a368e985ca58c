"""The worker's pieces: kohya command line, tqdm parsing, stand-in trainer, upload-when-complete."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from modelcrew_assets.object_store import ObjectStore
from modelcrew_assets.worker.base_model import (
    BASE_MODEL_ENV,
    DEFAULT_BASE_MODEL,
    MODEL_CACHE_ENV,
    BaseModelError,
    local_base_model,
)
from modelcrew_assets.worker.kohya import (
    Recipe,
    TrainPaths,
    global_step,
    one_epoch_repeats,
    parse_batches_per_epoch,
    parse_progress,
    sample_prompt_lines,
    training_flags,
)
from modelcrew_assets.worker.safetensors_header import is_complete, parse_header, read_header
from modelcrew_assets.worker.stand_in_trainer import lora_safetensors, parser, save_state
from modelcrew_assets.worker.uploader import Reporter, Uploader, state_is_whole

# Every option sd-scripts' sdxl_train_network.py parser accepts that the worker uses, read from
# train_network.py and library/train_util.py at kohya-ss/sd-scripts 48d368fa557731ad0488c07304dfeba8c07910eb.
KOHYA_OPTIONS = {
    "pretrained_model_name_or_path", "train_data_dir", "output_dir", "output_name", "save_model_as",
    "network_module", "network_dim", "network_alpha", "learning_rate", "optimizer_type", "mixed_precision",
    "save_precision", "gradient_checkpointing", "cache_latents", "resolution", "enable_bucket",
    "train_batch_size", "max_train_steps", "save_every_n_steps", "caption_extension", "sample_every_n_steps",
    "sample_prompts", "sample_sampler", "seed", "sdpa", "save_state", "resume", "skip_until_initial_step",
    "min_bucket_reso", "max_bucket_reso", "bucket_reso_steps", "unet_lr", "text_encoder_lr", "noise_offset",
    "min_snr_gamma", "caption_dropout_rate", "shuffle_caption", "keep_tokens", "network_train_unet_only",
    "optimizer_args",
}  # fmt: skip
# What a manifest may tune, each with a value that is not kohya's default (so it must reach the command line).
TUNED = Recipe(
    optimizer_type="Prodigy", learning_rate=1.0, unet_lr=1.0, network_train_unet_only=True, noise_offset=0.0357,
    min_snr_gamma=5.0, caption_dropout_rate=0.05, shuffle_caption=True, keep_tokens=2, mixed_precision="fp16",
    seed=7,
)  # fmt: skip

PATHS = TrainPaths(
    base_model="/opt/models/sd_xl_base_1.0.safetensors",
    train_data_dir=Path("/w/dataset/img"),
    output_dir=Path("/w/output"),
    output_name="blondie",
    sample_prompts=Path("/w/sample_prompts.txt"),
)


def as_options(flags: list[str]) -> dict[str, str | list[str] | None]:
    """--name -> its value, None for a switch, the list for one that takes several (nargs='*')."""
    options, index = {}, 0
    while index < len(flags):
        name = flags[index].removeprefix("--")
        values = []
        index += 1
        while index < len(flags) and not flags[index].startswith("--"):
            values.append(flags[index])
            index += 1
        options[name] = None if not values else values[0] if len(values) == 1 else values
    return options


def test_kohya_command_equals_the_studio_recipe_flag_by_flag():
    assert as_options(training_flags(Recipe(), PATHS)) == {
        "pretrained_model_name_or_path": "/opt/models/sd_xl_base_1.0.safetensors",
        "train_data_dir": "/w/dataset/img",
        "output_dir": "/w/output",
        "output_name": "blondie",
        "save_model_as": "safetensors",
        "network_module": "networks.lora",
        "network_dim": "16",
        "network_alpha": "16",
        "learning_rate": "0.0001",
        "optimizer_type": "AdamW8bit",
        "mixed_precision": "bf16",
        "save_precision": "bf16",
        "gradient_checkpointing": None,
        "cache_latents": None,
        "resolution": "1024,1024",
        "enable_bucket": None,
        "min_bucket_reso": "256",
        "max_bucket_reso": "2048",
        "bucket_reso_steps": "64",
        "train_batch_size": "1",
        "max_train_steps": "1500",
        "save_every_n_steps": "250",
        "caption_extension": ".txt",
        "sample_every_n_steps": "250",
        "sample_prompts": "/w/sample_prompts.txt",
        "sample_sampler": "euler_a",
        "seed": "42",
        "sdpa": None,
    }


def test_save_state_and_resume_add_kohyas_flags():
    paths = TrainPaths(**{**PATHS.__dict__, "resume_state": Path("/w/output/blondie-step00000500-state")})
    options = as_options(training_flags(Recipe(save_state=True), paths))
    assert "save_state" in options and options["resume"] == "/w/output/blondie-step00000500-state"
    assert "skip_until_initial_step" in options  # else kohya restarts global_step at 0


def test_every_flag_exists_in_kohyas_parser_and_the_stand_in_accepts_the_command():
    paths = TrainPaths(**{**PATHS.__dict__, "resume_state": Path("/w/state")})
    flags = training_flags(Recipe(save_state=True), paths)
    assert set(as_options(flags)) <= KOHYA_OPTIONS
    parsed = parser().parse_args(flags)
    assert parsed.network_dim == 16 and parsed.resolution == "1024,1024" and parsed.save_state
    assert (parsed.min_bucket_reso, parsed.max_bucket_reso, parsed.skip_until_initial_step) == (256, 2048, True)


def test_each_training_option_reaches_kohyas_command_line():
    options = as_options(training_flags(TUNED, PATHS))
    assert {name: options.get(name, "absent") for name in (
        "optimizer_type", "learning_rate", "unet_lr", "network_train_unet_only", "noise_offset", "min_snr_gamma",
        "caption_dropout_rate", "shuffle_caption", "keep_tokens", "mixed_precision", "save_precision", "seed",
    )} == {
        "optimizer_type": "Prodigy", "learning_rate": "1", "unet_lr": "1", "network_train_unet_only": None,
        "noise_offset": "0.0357", "min_snr_gamma": "5", "caption_dropout_rate": "0.05", "shuffle_caption": None,
        "keep_tokens": "2", "mixed_precision": "fp16", "save_precision": "fp16", "seed": "7",
    }  # fmt: skip
    assert options["optimizer_args"] == ["decouple=True", "weight_decay=0.01", "use_bias_correction=True", "safeguard_warmup=True"]  # fmt: skip
    assert set(options) <= KOHYA_OPTIONS
    adafactor = as_options(training_flags(Recipe(optimizer_type="Adafactor", text_encoder_lr=5e-5), PATHS))
    assert adafactor["optimizer_args"] == ["scale_parameter=False", "relative_step=False", "warmup_init=False"]
    assert adafactor["text_encoder_lr"] == "5e-05"
    assert as_options(training_flags(Recipe(mixed_precision="no"), PATHS))["save_precision"] == "float"


def test_the_stand_in_records_the_tuned_options_in_ss_metadata_as_kohya_does():
    args = parser().parse_args(training_flags(TUNED, PATHS))
    recorded = parse_header(lora_safetensors(16, 16, 250, args)).metadata
    assert recorded["ss_optimizer"] == (
        "prodigyopt.prodigy.Prodigy(decouple=True,weight_decay=0.01,use_bias_correction=True,safeguard_warmup=True)"
    )
    assert (recorded["ss_unet_lr"], recorded["ss_text_encoder_lr"]) == ("1.0", "None")
    assert (recorded["ss_noise_offset"], recorded["ss_min_snr_gamma"]) == ("0.0357", "5.0")
    assert (recorded["ss_shuffle_caption"], recorded["ss_keep_tokens"], recorded["ss_seed"]) == ("True", "2", "7")
    assert recorded["ss_sd_model_name"] == PATHS.base_model  # not on this machine: kohya keeps the name as given


def test_the_stand_in_accepts_no_flag_kohyas_parser_lacks():
    stand_in = {action.dest for action in parser()._actions if action.option_strings and action.dest != "help"}
    assert stand_in <= KOHYA_OPTIONS


def test_sample_prompts_ask_kohya_for_1024_pictures():
    lines = sample_prompt_lines(["blondie, portrait", "blondie, beach"], "blurry", 1024, 42).splitlines()
    assert lines == [
        "blondie, portrait --n blurry --w 1024 --h 1024 --d 42 --s 28 --l 7",
        "blondie, beach --n blurry --w 1024 --h 1024 --d 43 --s 28 --l 7",
    ]


def test_tqdm_progress_lines_give_step_total_and_loss():
    line = "steps:  17%|█▋        | 250/1500 [01:02<05:10,  4.02it/s, avr_loss=0.0912]"
    progress = parse_progress(line)
    assert (progress.step, progress.total, progress.avr_loss) == (250, 1500, 0.0912)
    assert (progress.elapsed, progress.remaining) == ("01:02", "05:10")
    assert parse_progress("steps:   0%|          | 0/1500 [00:00<?, ?it/s]").avr_loss is None
    assert parse_progress("INFO     prepare optimizer, data loader etc.") is None


def test_half_written_safetensors_is_not_complete(tmp_path: Path):
    args = parser().parse_args(["--network_dim", "8", "--network_alpha", "4", "--output_name", "m", "--max_train_steps", "10", "--learning_rate", "1e-4", "--resolution", "1024,1024", "--seed", "1"])  # fmt: skip
    data = lora_safetensors(8, 4, 250, args)
    partial = tmp_path / "m-step00000250.safetensors"
    partial.write_bytes(data[: len(data) - 10])
    assert not is_complete(partial)
    partial.write_bytes(data)
    assert is_complete(partial)
    header = read_header(partial)
    assert header.metadata["ss_network_dim"] == "8" and header.metadata["ss_network_alpha"] == "4"
    assert all(name.startswith("lora_unet_") for name in header.tensors)
    assert header.tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight"]["shape"] == [
        8,
        64,
    ]
    assert parse_header(data).total_size == len(data)


def test_stand_in_resumes_from_a_saved_state(tmp_path: Path):
    # Changed with the stand-in's kohya numbering: the state must be whole (accelerate's files) and the
    # dataset folder holds the epoch (3 images x 2 repeats = 6 batches, so step 4 lies in the first epoch).
    recipe = Recipe(max_train_steps=6, save_every_n_steps=2, save_state=True)
    state = tmp_path / "out" / "m-step00000004-state"
    save_state(state, recipe, 1, 4, b"weights", 0)
    train_dir = image_folder(tmp_path, repeats=2)
    done = stand_in(tmp_path, recipe, train_dir, resume=state)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "out").glob("*.safetensors"))
    assert names == ["m-step00000006.safetensors", "m.safetensors"]
    assert "2/2" in progress_lines(done)[-1] and "resume training from local state" in done.stderr


def image_folder(root: Path, repeats: int, images: int = 3) -> Path:
    folder = root / "img" / f"{repeats}_m woman"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(images):
        (folder / f"{index:03d}.jpg").write_bytes(b"\xff\xd8")
        (folder / f"{index:03d}.txt").write_text("m, a photo of a woman\n")
    return folder.parent


def stand_in(root: Path, recipe: Recipe, train_dir: Path, resume: Path | None = None, skip: bool = True, env=None):
    prompts = root / "prompts.txt"
    prompts.write_text("a --w 1024 --h 1024\n")
    flags = training_flags(recipe, TrainPaths("base", train_dir, root / "out", "m", prompts, resume_state=resume))
    if not skip:
        flags.remove("--skip_until_initial_step")
    command = [sys.executable, "-m", "modelcrew_assets.worker.stand_in_trainer", *flags]
    return subprocess.run(command, check=False, capture_output=True, text=True, env={**os.environ, **(env or {})})


def progress_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in re.split(r"[\r\n]", done.stderr) if parse_progress(line)]


def saved_steps(output: Path, since: float) -> list[int]:
    return sorted(int(p.name[-20:-12]) for p in output.glob("m-step*.safetensors") if p.stat().st_mtime_ns > since)


def first_run_with_state(tmp_path: Path, recipe: Recipe, repeats: int) -> Path:
    train_dir = image_folder(tmp_path, repeats)
    assert stand_in(tmp_path, recipe, train_dir).returncode == 0
    return train_dir


def test_stand_in_resume_without_skip_until_initial_step_restarts_at_step_0_like_kohya(tmp_path: Path):
    """train_network.py: --resume alone skips S // N epochs for show and starts global_step at 0."""
    recipe = Recipe(max_train_steps=200, save_every_n_steps=50, save_state=True)
    train_dir = first_run_with_state(tmp_path, recipe, repeats=30)  # 90 batches per epoch
    since = time.time_ns()
    done = stand_in(tmp_path, recipe, train_dir, resume=tmp_path / "out" / "m-step00000100-state", skip=False)
    assert done.returncode == 0, done.stderr
    assert "num batches per epoch / 1epochのバッチ数: 90" in done.stdout
    # epochs 2 and 3 of 3 (180 batches), numbered 1..180: the first run's 50, 100, 150 are written again
    assert saved_steps(tmp_path / "out", since) == [50, 100, 150]
    first, last = (parse_progress(line) for line in progress_lines(done)[:: len(progress_lines(done)) - 1])
    assert (first.step, first.total, last.step) == (1, 200, 180)
    assert global_step(first, recipe.max_train_steps) == 1


def test_stand_in_skip_until_initial_step_past_the_first_epoch_numbers_from_the_remainder(tmp_path: Path):
    """The open PR #1406 bug: whole epochs are subtracted from the initial step, so a state at 100 with
    90 batches per epoch resumes as global_step 10."""
    recipe = Recipe(max_train_steps=200, save_every_n_steps=50, save_state=True)
    train_dir = first_run_with_state(tmp_path, recipe, repeats=30)
    since = time.time_ns()
    done = stand_in(tmp_path, recipe, train_dir, resume=tmp_path / "out" / "m-step00000100-state")
    assert done.returncode == 0, done.stderr
    assert saved_steps(tmp_path / "out", since) == [50, 100, 150]  # steps 11..180
    first, last = (parse_progress(line) for line in progress_lines(done)[:: len(progress_lines(done)) - 1])
    assert (first.step, first.total, last.step) == (1, 190, 170)
    assert global_step(first, recipe.max_train_steps) == 11


def test_stand_in_skip_until_initial_step_inside_the_first_epoch_numbers_every_step_right(tmp_path: Path):
    recipe = Recipe(max_train_steps=200, save_every_n_steps=50, save_state=True)
    train_dir = first_run_with_state(tmp_path, recipe, repeats=one_epoch_repeats(3, 30, recipe))
    since = time.time_ns()
    done = stand_in(tmp_path, recipe, train_dir, resume=tmp_path / "out" / "m-step00000100-state")
    assert done.returncode == 0, done.stderr
    assert "1epochのバッチ数: 201" in done.stdout  # 3 images x 67 repeats
    assert saved_steps(tmp_path / "out", since) == [150, 200]
    last = parse_progress(progress_lines(done)[-1])
    assert (last.step, last.total, global_step(last, recipe.max_train_steps)) == (100, 100, 200)


def test_stand_in_refuses_a_state_at_max_train_steps_like_kohyas_assertion(tmp_path: Path):
    recipe = Recipe(max_train_steps=200, save_every_n_steps=50, save_state=True)
    train_dir = first_run_with_state(tmp_path, recipe, repeats=67)
    done = stand_in(tmp_path, recipe, train_dir, resume=tmp_path / "out" / "m-step00000200-state")
    assert done.returncode == 1 and "max_train_steps should be greater than initial step" in done.stderr


def test_stand_in_cannot_resume_a_state_missing_accelerates_files(tmp_path: Path):
    recipe = Recipe(max_train_steps=20, save_every_n_steps=5, save_state=True)
    state = tmp_path / "out" / "m-step00000005-state"
    save_state(state, recipe, 1, 5, b"weights", 0)
    (state / "random_states_0.pkl").unlink()
    done = stand_in(tmp_path, recipe, image_folder(tmp_path, 10), resume=state)
    assert done.returncode != 0 and "random_states_0.pkl" in done.stderr


def test_stand_in_writes_the_final_weights_and_state_at_the_end(tmp_path: Path):
    recipe = Recipe(max_train_steps=7, save_every_n_steps=5, save_state=True)
    done = stand_in(tmp_path, recipe, image_folder(tmp_path, 10))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["m-step00000005.safetensors", "m.safetensors"]
    assert read_header(out / "m.safetensors").metadata["ss_steps"] == "7"
    assert json.loads((out / "m-state" / "train_state.json").read_text())["current_step"] == 7


def test_stand_in_writes_train_state_json_before_the_rest_of_the_state(tmp_path: Path):
    """kohya's pre-save hook writes train_state.json, then accelerate writes the weights and optimizer:
    a watcher sees a folder with train_state.json that is not yet whole."""
    recipe = Recipe(max_train_steps=10, save_every_n_steps=5, save_state=True)
    seen_half = threading.Event()

    def watch() -> None:
        state = tmp_path / "out" / "m-step00000005-state"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not seen_half.is_set():
            if (state / "train_state.json").exists() and not state_is_whole(state, recipe):
                seen_half.set()
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    done = stand_in(tmp_path, recipe, image_folder(tmp_path, 10), env={"MODELCREW_STANDIN_STEP_SECONDS": "0.02"})
    watcher.join()
    assert done.returncode == 0 and seen_half.is_set()
    assert state_is_whole(tmp_path / "out" / "m-step00000005-state", recipe)


def test_progress_after_a_resume_is_numbered_by_kohyas_global_step():
    # kohya's bar counts 0..max_train_steps - initial_step; global_step starts at initial_step
    line = "steps:  10%|█         | 100/1000 [01:02<05:10,  4.02it/s, avr_loss=0.0912]"
    assert global_step(parse_progress(line), 1500) == 600
    assert global_step(parse_progress(line.replace("/1000", "/1500")), 1500) == 100
    assert parse_batches_per_epoch("  num batches per epoch / 1epochのバッチ数: 1500") == 1500


def test_one_epoch_repeats_hold_the_step_budget_and_never_lower_the_datasets():
    recipe = Recipe(max_train_steps=1500)
    assert one_epoch_repeats(3, 30, recipe) == 500
    assert one_epoch_repeats(7, 30, recipe) == 215  # 1505 batches >= 1500
    assert one_epoch_repeats(100, 30, recipe) == 30
    assert one_epoch_repeats(4, 1, Recipe(max_train_steps=1500, train_batch_size=2)) == 750


def test_checkpoint_steps_end_with_the_last_step():
    assert Recipe(max_train_steps=1500, save_every_n_steps=250).checkpoint_steps == (250, 500, 750, 1000, 1250, 1500)
    assert Recipe(max_train_steps=1400, save_every_n_steps=250).checkpoint_steps == (250, 500, 750, 1000, 1250, 1400)
    assert Recipe(max_train_steps=100, save_every_n_steps=250).checkpoint_steps == (100,)


TRAINING_MODULES = tuple(
    f"worker/{name}"
    for name in (
        "__init__", "heartbeat", "kohya", "messages", "safetensors_header", "store", "train", "uploader", "resume",
        "stand_in_trainer",
    )
)  # fmt: skip
# The project's Dagster-free storage, which the worker shares with the orchestrator.
SHARED_MODULES = {
    "modelcrew_assets.object_store": "object_store",
    "modelcrew_assets.resources.storage_backends": "resources/storage_backends",
    "modelcrew_assets.storage_keys": "storage_keys",
}


def test_training_worker_imports_nothing_but_the_stdlib_boto3_pydantic_and_dagster_pipes():
    allowed = {"boto3", "botocore", "dagster_pipes", "pydantic"}
    package = Path(__file__).parents[1] / "modelcrew_assets"
    for module in (*TRAINING_MODULES, *SHARED_MODULES.values()):
        path = package / f"{module}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                top = name.split(".")[0]
                inside = name.startswith("modelcrew_assets.worker") or name in SHARED_MODULES
                assert top in sys.stdlib_module_names or top in allowed or inside, f"{module}.py imports {name}"


def test_the_worker_image_installs_every_package_the_training_worker_imports():
    """botocore comes with boto3; the rest must be on the worker image's own pip line."""
    dockerfile = (Path(__file__).parents[1] / "deploy/worker/Dockerfile").read_text()
    for distribution in ("boto3", "dagster-pipes", "pydantic"):
        assert f'"{distribution}' in dockerfile, f"deploy/worker/Dockerfile does not install {distribution}"


def test_worker_entry_point_imports_neither_dagster_nor_the_image_stack():
    code = (
        "import sys, modelcrew_assets.worker.__main__, modelcrew_assets.worker.train; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'cv2', 'numpy', 'PIL', 'torch'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


class RecordingPipes:
    """What Reporter needs of a PipesContext: log.info / log.warning and custom messages."""

    def __init__(self):
        self.messages: list[dict] = []
        self.logs: list[str] = []
        self.log = self

    def info(self, message: str) -> None:
        self.logs.append(message)

    warning = info

    def report_custom_message(self, payload: dict) -> None:
        self.messages.append(payload)


def uploader_for(tmp_path: Path, recipe: Recipe, attempt: str = "a1", lineage=None) -> tuple[Uploader, RecordingPipes]:
    pipes = RecordingPipes()
    output = tmp_path / "out"
    (output / "sample").mkdir(parents=True, exist_ok=True)
    store = ObjectStore.from_url(f"file://{tmp_path / 'store'}")
    return Uploader(store, Reporter(pipes), output, "run/", "m", recipe, attempt, lineage), pipes


def stored_keys(url: str, prefix: str) -> list[str]:
    return [item.key for item in ObjectStore.from_url(url).list(prefix)]


def checkpoint_bytes(step: int) -> bytes:
    args = parser().parse_args(["--network_dim", "4", "--network_alpha", "4", "--output_name", "m", "--max_train_steps", "10", "--learning_rate", "1e-4", "--resolution", "1024,1024", "--seed", "1"])  # fmt: skip
    return lora_safetensors(4, 4, step, args)


def test_a_state_whose_files_are_still_being_written_is_not_uploaded(tmp_path: Path):
    recipe = Recipe(max_train_steps=10, save_every_n_steps=5, save_state=True)
    uploader, _ = uploader_for(tmp_path, recipe)
    (tmp_path / "out" / "m-step00000005.safetensors").write_bytes(checkpoint_bytes(5))
    whole = tmp_path / "whole"
    save_state(whole, recipe, 1, 5, checkpoint_bytes(5), 0)
    state = tmp_path / "out" / "m-step00000005-state"
    state.mkdir()
    # what kohya + accelerate leave mid-save: train_state.json first, the optimizer cut short, no RNG file
    for name in ("train_state.json", "model.safetensors", "scheduler.bin"):
        (state / name).write_bytes((whole / name).read_bytes())
    (state / "optimizer.bin").write_bytes((whole / "optimizer.bin").read_bytes()[:100])
    for _ in range(3):  # sizes settle: the old rule (train_state.json there, sizes stable) took this as whole
        uploader.scan()
    stored = stored_keys(f"file://{tmp_path / 'store'}", "run/state/")
    assert stored == [] and not state_is_whole(state, recipe)

    (state / "optimizer.bin").write_bytes((whole / "optimizer.bin").read_bytes())
    (state / "random_states_0.pkl").write_bytes((whole / "random_states_0.pkl").read_bytes())
    uploader.scan(final=True)
    stored = stored_keys(f"file://{tmp_path / 'store'}", "run/state/")
    folder = "run/state/m-step00000005-state/"
    assert sorted(stored) == sorted(folder + name for name in (*recipe.state_files, "checkpoints.json"))
    lineage = json.loads((tmp_path / "store" / folder / "checkpoints.json").read_text())
    assert lineage == {"5": "run/m-step00000005.safetensors"}


def test_stored_checkpoints_are_never_overwritten_and_a_retrained_step_is_kept_apart(tmp_path: Path):
    recipe = Recipe(max_train_steps=10, save_every_n_steps=5)
    first, _ = uploader_for(tmp_path, recipe, attempt="a1")
    (tmp_path / "out" / "m-step00000005.safetensors").write_bytes(checkpoint_bytes(5))
    first.scan(final=True)
    stored = tmp_path / "store" / "run" / "m-step00000005.safetensors"
    original = stored.read_bytes()

    same, pipes = uploader_for(tmp_path, recipe, attempt="a2")
    same.scan(final=True)  # the same bytes again: nothing sent, the stored key reported
    assert pipes.messages[0]["key"] == "run/m-step00000005.safetensors" and stored.read_bytes() == original

    (tmp_path / "out" / "m-step00000005.safetensors").write_bytes(checkpoint_bytes(6))  # trained anew
    other, pipes = uploader_for(tmp_path, recipe, attempt="a3")
    other.scan(final=True)
    assert stored.read_bytes() == original
    assert pipes.messages[0]["key"] == "run/attempts/a3/m-step00000005.safetensors"
    assert (
        tmp_path / "store" / "run" / "attempts" / "a3" / "m-step00000005.safetensors"
    ).read_bytes() == checkpoint_bytes(6)


def test_final_weights_are_stored_as_the_last_step_unless_that_is_a_save_step(tmp_path: Path):
    recipe = Recipe(max_train_steps=7, save_every_n_steps=5)
    uploader, pipes = uploader_for(tmp_path / "a", recipe)
    (tmp_path / "a" / "out" / "m-step00000005.safetensors").write_bytes(checkpoint_bytes(5))
    (tmp_path / "a" / "out" / "m.safetensors").write_bytes(checkpoint_bytes(7))
    uploader.scan(final=True)
    assert [(m["step"], m["key"]) for m in pipes.messages] == [
        (5, "run/m-step00000005.safetensors"), (7, "run/m-step00000007.safetensors"),
    ]  # fmt: skip

    recipe = Recipe(max_train_steps=10, save_every_n_steps=5)
    uploader, pipes = uploader_for(tmp_path / "b", recipe)
    for step in (5, 10):
        (tmp_path / "b" / "out" / f"m-step{step:08d}.safetensors").write_bytes(checkpoint_bytes(step))
    (tmp_path / "b" / "out" / "m.safetensors").write_bytes(checkpoint_bytes(10))
    uploader.scan(final=True)
    assert [m["step"] for m in pipes.messages] == [5, 10]
    assert stored_keys(f"file://{tmp_path / 'b' / 'store'}", "run/") == [
        "run/m-step00000005.safetensors", "run/m-step00000010.safetensors",
    ]  # fmt: skip


def test_a_stored_base_model_is_downloaded_once_into_the_cache_and_a_missing_one_says_what_to_do(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(BASE_MODEL_ENV, raising=False)
    store = ObjectStore.from_url(f"file://{tmp_path / 'store'}")
    store.put_bytes("base_models/juggernaut_xl.safetensors", b"sdxl weights")
    downloads = []
    original = ObjectStore.download
    monkeypatch.setattr(ObjectStore, "download", lambda self, *a: downloads.append(a[0]) or original(self, *a))
    first = local_base_model(store, "base_models/juggernaut_xl.safetensors")
    again = local_base_model(store, "base_models/juggernaut_xl.safetensors")
    assert (
        first == again
        and Path(first).read_bytes() == b"sdxl weights"
        and Path(first).name == "juggernaut_xl.safetensors"
    )
    assert downloads == ["base_models/juggernaut_xl.safetensors"]
    assert not list((tmp_path / "cache").rglob("*.part"))
    assert local_base_model(store, None) == DEFAULT_BASE_MODEL
    with pytest.raises(BaseModelError, match="is not in storage .*upload the .safetensors there"):
        local_base_model(store, "base_models/missing.safetensors")
    with pytest.raises(BaseModelError, match="does not exist on this GPU machine"):
        local_base_model(store, str(tmp_path / "nowhere.safetensors"))
