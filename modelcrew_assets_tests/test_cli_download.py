"""`modelcrew download`: the chosen LoRA (or a given step) as a file ComfyUI / A1111 users can take."""

import hashlib

from modelcrew_assets.cli import EXIT_BAD_INPUT, EXIT_OK, main
from modelcrew_assets.handoffs import Checkpoint, CheckpointEvaluations, LoraCheckpoints, write_index
from modelcrew_assets.storage_keys import asset_prefix, manifest_key
from modelcrew_assets_tests.builders import manifest_text

MODEL = "blondie"


def seed_trained_model(storage, steps=(500, 1000), chosen=1000, dry_run=False) -> dict[int, bytes]:
    storage.put_bytes(manifest_key(MODEL), manifest_text(MODEL, "blndz").encode())
    files, checkpoints = {}, []
    for step in steps:
        data = f"weights at step {step}".encode()
        key = f"{asset_prefix(MODEL, 'lora_checkpoints')}run1/{MODEL}-step{step:08d}.safetensors"
        storage.put_bytes(key, data)
        files[step] = data
        checkpoints.append(Checkpoint(step=step, key=key, sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
    trained = LoraCheckpoints(
        model=MODEL, dry_run=dry_run, run_id="run1", dataset_version="v1", base_model="sd_xl_base_1.0.safetensors",
        checkpoints=tuple(checkpoints),
    )  # fmt: skip
    write_index(storage, trained)
    if chosen is not None:
        [picked] = [checkpoint for checkpoint in checkpoints if checkpoint.step == chosen]
        evaluations = CheckpointEvaluations(
            model=MODEL, dry_run=dry_run, run_id="e1", scores=(), chosen=picked, reason="best", lora_run_id="run1"
        )
        write_index(storage, evaluations)
    return files


def test_download_writes_the_chosen_checkpoint_under_the_name_ui_users_expect(
    local_storage, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    files = seed_trained_model(local_storage)
    out = tmp_path / "loras"
    assert main(["download", MODEL, "--out", str(out)]) == EXIT_OK
    assert (out / "blondie-1000.safetensors").read_bytes() == files[1000]
    sidecar = (out / "blondie-1000.txt").read_text()
    assert "trigger word: blndz" in sidecar and "suggested LoRA weight: 0.9" in sidecar
    assert "DRY RUN" not in sidecar
    assert "the chosen checkpoint, step 1000" in capsys.readouterr().out
    assert sorted(path.name for path in out.iterdir()) == ["blondie-1000.safetensors", "blondie-1000.txt"]


def test_download_of_a_given_step_and_of_a_missing_one(local_storage, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    files = seed_trained_model(local_storage, chosen=None)
    assert main(["download", MODEL, "--step", "500", "--out", str(tmp_path)]) == EXIT_OK
    assert (tmp_path / "blondie-500.safetensors").read_bytes() == files[500]
    assert main(["download", MODEL, "--step", "750", "--out", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "no checkpoint at step 750; trained steps: 500, 1000" in capsys.readouterr().err
    assert main(["download", MODEL, "--out", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "no checkpoint of 'blondie' has been chosen yet" in capsys.readouterr().err


def test_download_refuses_a_file_that_changed_in_storage_and_labels_dry_runs(
    local_storage, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    seed_trained_model(local_storage, dry_run=True)
    assert main(["download", MODEL, "--step", "500", "--out", str(tmp_path)]) == EXIT_OK
    assert (tmp_path / "blondie-500.txt").read_text().startswith("DRY RUN: a stand-in file")
    key = f"{asset_prefix(MODEL, 'lora_checkpoints')}run1/{MODEL}-step{1000:08d}.safetensors"
    local_storage.put_bytes(key, b"tampered")
    assert main(["download", MODEL, "--out", str(tmp_path / "second")]) == EXIT_BAD_INPUT
    assert "recorded when it was uploaded; the file changed in storage" in capsys.readouterr().err
    assert not (tmp_path / "second" / "blondie-1000.safetensors").exists()
