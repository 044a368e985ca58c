"""Captions a person reviews: `modelcrew captions MODEL --export DIR` writes them as <photo>.txt, `--import DIR`
uploads the edited ones as hand captions (one new run; a lost trigger word is put back first), and the next
captions run uses them."""

import dagster as dg
import pytest

from modelcrew_assets.captions.assets import captions
from modelcrew_assets.cli import EXIT_BAD_INPUT, EXIT_OK, main
from modelcrew_assets.handoffs import CaptionedImage, Captions, read_index, write_index
from modelcrew_assets.resources.captioner import SimulatedCaptionerResource
from modelcrew_assets.storage_keys import hand_captions_prefix
from modelcrew_assets_tests.builders import (
    store_swapped_faces,
    target_variants,
    tick_registering_partitions,
    upload_model,
)

MODEL = "blondie"


def caption_run(instance, storage) -> Captions:
    dg.materialize(
        [captions],
        partition_key=MODEL,
        instance=instance,
        resources={"storage": storage, "captioner": SimulatedCaptionerResource()},
    )
    return read_index(storage, MODEL, Captions)


@pytest.fixture
def captioned(instance, local_storage, astronaut, monkeypatch):
    """A model with three captioned photos, registered by the sensor, the CLI pointed at its storage."""
    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    upload_model(local_storage, astronaut, MODEL, targets=3)
    store_swapped_faces(local_storage, target_variants(astronaut, 3), MODEL)
    first_tick = tick_registering_partitions(instance, local_storage)
    assert len(first_tick.run_requests) == 1
    caption_run(instance, local_storage)
    return first_tick.cursor


def test_exported_captions_edited_and_imported_win_and_start_one_run(
    captioned, instance, local_storage, tmp_path, capsys
):
    folder = tmp_path / "review"
    assert main(["captions", MODEL, "--export", str(folder)]) == EXIT_OK
    files = sorted(path.name for path in folder.iterdir())
    assert files == ["target-000.txt", "target-001.txt", "target-002.txt"]
    assert (folder / "target-001.txt").read_text().startswith("blondie, a photo of a woman")

    (folder / "target-000.txt").write_text("a woman in a red coat on a beach\n")  # the trigger got lost
    (folder / "target-001.txt").write_text("blondie, a woman reading by a window\n")
    assert main(["captions", MODEL, "--import", str(folder)]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "fixed      target-000.txt: the trigger word 'blondie' was missing or not first" in printed
    stored = local_storage.get_bytes(hand_captions_prefix(MODEL) + "target-000.txt").decode()
    assert stored == "blondie, a woman in a red coat on a beach\n"

    tick = tick_registering_partitions(instance, local_storage, captioned)
    assert len(tick.run_requests) == 1, "changed captions are a changed upload: one new run"
    assert not tick_registering_partitions(instance, local_storage, tick.cursor).run_requests

    by_target = {item.image_key: item for item in caption_run(instance, local_storage).items}
    hand = sorted((item.caption, item.source) for item in by_target.values() if item.source == "hand")
    assert hand == [
        ("blondie, a woman in a red coat on a beach", "hand"),
        ("blondie, a woman reading by a window", "hand"),
    ]


def test_an_emptied_caption_is_refused_and_nothing_is_written(local_storage, astronaut, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    upload_model(local_storage, astronaut, MODEL, targets=3)
    swapped = store_swapped_faces(local_storage, target_variants(astronaut, 3), MODEL)
    items = [
        CaptionedImage(image_key=image.key, image_sha256=image.sha256, caption="blondie, a woman", source="template")
        for image in swapped.images
    ]
    write_index(local_storage, Captions(model=MODEL, prompt_version="test", items=tuple(items)))
    folder = tmp_path / "review"
    assert main(["captions", MODEL, "--export", str(folder)]) == EXIT_OK
    (folder / "target-002.txt").write_text("  \n")
    assert main(["captions", MODEL, "--import", str(folder)]) == EXIT_BAD_INPUT
    assert "target-002.txt: caption is empty" in capsys.readouterr().err
    assert not list(local_storage.list(hand_captions_prefix(MODEL)))


def test_export_before_any_captions_says_which_stage_to_run(local_storage, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    assert main(["captions", MODEL, "--export", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert "materialize captions for partition 'blondie' first" in capsys.readouterr().err
