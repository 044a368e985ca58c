"""The worker's pieces: kohya command line, tqdm parsing, stand-in trainer, upload-when-complete."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from modelcrew_assets.worker.kohya import Recipe, TrainPaths, parse_progress, sample_prompt_lines, training_flags
from modelcrew_assets.worker.safetensors_header import is_complete, parse_header, read_header
from modelcrew_assets.worker.stand_in_trainer import lora_safetensors, parser

# Every option sd-scripts' sdxl_train_network.py parser accepts that the worker uses, read from
# train_network.py and library/train_util.py at kohya-ss/sd-scripts 48d368fa557731ad0488c07304dfeba8c07910eb.
KOHYA_OPTIONS = {
    "pretrained_model_name_or_path", "train_data_dir", "output_dir", "output_name", "save_model_as",
    "network_module", "network_dim", "network_alpha", "learning_rate", "optimizer_type", "mixed_precision",
    "save_precision", "gradient_checkpointing", "cache_latents", "resolution", "enable_bucket",
    "train_batch_size", "max_train_steps", "save_every_n_steps", "caption_extension", "sample_every_n_steps",
    "sample_prompts", "sample_sampler", "seed", "sdpa", "save_state", "resume",
}  # fmt: skip

PATHS = TrainPaths(
    base_model="/opt/models/sd_xl_base_1.0.safetensors",
    train_data_dir=Path("/w/dataset/img"),
    output_dir=Path("/w/output"),
    output_name="blondie",
    sample_prompts=Path("/w/sample_prompts.txt"),
)


def as_options(flags: list[str]) -> dict[str, str | None]:
    options, index = {}, 0
    while index < len(flags):
        name = flags[index].removeprefix("--")
        has_value = index + 1 < len(flags) and not flags[index + 1].startswith("--")
        options[name] = flags[index + 1] if has_value else None
        index += 2 if has_value else 1
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


def test_every_flag_exists_in_kohyas_parser_and_the_stand_in_accepts_the_command():
    paths = TrainPaths(**{**PATHS.__dict__, "resume_state": Path("/w/state")})
    flags = training_flags(Recipe(save_state=True), paths)
    assert set(as_options(flags)) <= KOHYA_OPTIONS
    parsed = parser().parse_args(flags)
    assert parsed.network_dim == 16 and parsed.resolution == "1024,1024" and parsed.save_state


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
    assert header.tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight"]["shape"] == [8, 64]
    assert parse_header(data).total_size == len(data)


def test_stand_in_resumes_from_a_saved_state(tmp_path: Path):
    state = tmp_path / "out" / "m-step00000004-state"
    state.mkdir(parents=True)
    (state / "train_state.json").write_text(json.dumps({"current_epoch": 1, "current_step": 4}))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a --w 1024 --h 1024\n")
    flags = training_flags(
        Recipe(max_train_steps=6, save_every_n_steps=2, save_state=True),
        TrainPaths("base", tmp_path, tmp_path / "out", "m", prompts, resume_state=state),
    )
    done = subprocess.run([sys.executable, "-m", "modelcrew_assets.worker.stand_in_trainer", *flags], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.safetensors")) == ["m-step00000006.safetensors"]
    assert "6/6" in done.stderr and "(step 4)" in done.stderr


TRAINING_MODULES = ("__init__", "kohya", "messages", "safetensors_header", "store", "train", "uploader", "stand_in_trainer")


def test_training_worker_imports_nothing_but_the_stdlib_boto3_and_dagster_pipes():
    allowed = {"boto3", "dagster_pipes"}
    package = Path(__file__).parents[1] / "modelcrew_assets" / "worker"
    for module in TRAINING_MODULES:
        path = package / f"{module}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                top = name.split(".")[0]
                inside = name.startswith("modelcrew_assets.worker")
                assert top in sys.stdlib_module_names or top in allowed or inside, f"{path.name} imports {name}"


def test_worker_entry_point_imports_neither_dagster_nor_the_image_stack():
    code = (
        "import sys, modelcrew_assets.worker.__main__, modelcrew_assets.worker.train; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'cv2', 'numpy', 'PIL', 'torch'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
