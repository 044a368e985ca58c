"""The `modelcrew` command: upload (folders or a zip), demo, models; exit 2 and nothing written on bad input."""

import tomllib
from importlib import resources

import dagster as dg
import pytest
from PIL import Image

from modelcrew_assets.cli import EXIT_BAD_INPUT, EXIT_OK, main, model_statuses
from modelcrew_assets.definitions import defs
from modelcrew_assets.intake.sensors import model_uploads_sensor
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets_tests.builders import jpeg_bytes, manifest_text, target_variants
from modelcrew_assets_tests.test_zip_intake import make_zip, model_entries


@pytest.fixture
def cli_storage(storage, monkeypatch):
    """The storage the command talks to, chosen the way an operator does: MODELCREW_STORAGE_URL."""
    monkeypatch.setenv("MODELCREW_STORAGE_URL", storage.url)
    return storage


def keys(storage):
    return sorted(obj.key for obj in storage.list("uploads/"))


@pytest.fixture
def photos(tmp_path, astronaut):
    (tmp_path / "face.jpg").write_bytes(jpeg_bytes(astronaut))
    (tmp_path / "targets").mkdir()
    for index, image in enumerate(target_variants(astronaut, 3)):
        (tmp_path / "targets" / f"photo {index}.jpg").write_bytes(jpeg_bytes(image))
    (tmp_path / "targets" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "model.toml").write_text(manifest_text())
    return tmp_path


def upload_args(photos, *extra):
    return ["upload", "blondie", "--face", str(photos / "face.jpg"), "--targets", str(photos / "targets"), *extra]


def test_upload_prints_what_it_uploaded_and_a_rerun_skips_duplicates(cli_storage, photos, capsys):
    assert main(upload_args(photos, "--manifest", str(photos / "model.toml"))) == EXIT_OK
    out = capsys.readouterr().out
    assert "uploaded   uploads/blondie/targets/photo_0.jpg" in out
    assert "blondie: 5 uploaded, 0 duplicates skipped" in out
    before = keys(cli_storage)

    assert main(upload_args(photos)) == EXIT_OK
    out = capsys.readouterr().out
    assert "photo 2.jpg: same content already stored as uploads/blondie/targets/photo_2.jpg" in out
    assert "blondie: 0 uploaded, 4 duplicates skipped" in out
    assert keys(cli_storage) == before


def test_upload_lists_every_bad_file_exits_2_and_writes_nothing(cli_storage, photos, capsys):
    (photos / "targets" / "empty.jpg").write_bytes(b"")
    (photos / "targets" / "notes.txt").write_text("not a photo")
    assert main(upload_args(photos, "--manifest", str(photos / "model.toml"))) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "empty.jpg: the file is empty" in err and "notes.txt: not an image" in err
    assert "nothing was written" in err
    assert keys(cli_storage) == []


def test_upload_without_manifest_needs_one_in_storage(local_storage, monkeypatch, photos, capsys):
    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    assert main(upload_args(photos)) == EXIT_BAD_INPUT
    assert "no manifest: uploads/blondie/model.toml does not exist yet" in capsys.readouterr().err
    assert keys(local_storage) == []


def test_upload_bad_manifest_names_the_file_and_field(local_storage, monkeypatch, photos, capsys):
    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    (photos / "model.toml").write_text(manifest_text().replace("basis", "basys"))
    assert main(upload_args(photos, "--manifest", str(photos / "model.toml"))) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "model.toml" in err and "unknown key [consent].basys" in err
    assert keys(local_storage) == []


def test_upload_of_a_missing_file_is_bad_input(local_storage, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    assert main(["upload", "blondie", "--face", str(tmp_path / "nope.jpg")]) == EXIT_BAD_INPUT
    assert "nope.jpg: cannot read it" in capsys.readouterr().err


def test_upload_zip_with_flags_makes_the_manifest(cli_storage, tmp_path, astronaut, capsys):
    archive = tmp_path / "blondie.zip"
    archive.write_bytes(make_zip(model_entries(astronaut, manifest=False)))
    flags = ["--trigger", "bl0nd", "--class-word", "woman"]
    flags += ["--consent-by", "me@studio.example", "--consent-basis", "self"]
    assert main(["upload", "blondie", "--zip", str(archive), *flags]) == EXIT_OK
    spec = tomllib.loads(cli_storage.get_bytes("uploads/blondie/model.toml").decode())
    assert spec["model"] == {"name": "blondie", "trigger": "bl0nd", "class_word": "woman"}
    assert spec["consent"] == {"attested_by": "me@studio.example", "basis": "self"}
    assert "uploads/blondie/targets/t2.jpg" in keys(cli_storage)


def test_incomplete_manifest_flags_are_bad_input(local_storage, monkeypatch, tmp_path, astronaut, capsys):
    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    archive = tmp_path / "blondie.zip"
    archive.write_bytes(make_zip(model_entries(astronaut, manifest=False)))
    assert main(["upload", "blondie", "--zip", str(archive), "--trigger", "bl0nd"]) == EXIT_BAD_INPUT
    assert "also give --class-word, --consent-by, --consent-basis" in capsys.readouterr().err


def test_unsafe_zip_is_bad_input(local_storage, monkeypatch, tmp_path, astronaut, capsys):
    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    archive = tmp_path / "blondie.zip"
    archive.write_bytes(make_zip({**model_entries(astronaut), "../../x.jpg": jpeg_bytes(astronaut)}))
    assert main(["upload", "blondie", "--zip", str(archive)]) == EXIT_BAD_INPUT
    assert "entry '../../x.jpg'" in capsys.readouterr().err
    assert keys(local_storage) == []


def test_demo_data_is_shipped_large_enough_and_small_in_total():
    folder = resources.files("modelcrew_assets.demo")
    images = [folder / "face.jpg", *(folder / "targets").iterdir()]
    assert len(images) >= 16, "the face and 15+ training photos"
    assert all(min(Image.open(image).size) >= 1024 for image in images)
    assert sum(len(image.read_bytes()) for image in images) < 3 * 1024 * 1024
    assert "public-domain" in (folder / "model.toml").read_text()


def test_demo_uploads_once_and_the_sensor_starts_its_run(local_storage, monkeypatch, instance, capsys):
    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    assert main(["demo"]) == EXIT_OK
    assert "demo: 20 uploaded" in capsys.readouterr().out
    assert main(["demo"]) == EXIT_OK
    assert "demo: 0 uploaded, 19 duplicates skipped, 1 unchanged" in capsys.readouterr().out

    with dg.build_sensor_context(instance=instance, resources={"storage": local_storage}, definitions=defs) as context:
        result = model_uploads_sensor(context)
    assert [request.partition_key for request in result.run_requests] == ["demo"]


def test_models_lists_partitions_unregistered_uploads_and_last_materializations(
    local_storage, monkeypatch, instance, photos, astronaut, capsys
):
    @dg.asset(partitions_def=models_partitions)
    def swapped_faces() -> None:
        """Stand-in for a stage."""

    instance.add_dynamic_partitions(models_partitions.name, ["blondie", "ghost"])
    dg.materialize([swapped_faces], partition_key="blondie", instance=instance)
    local_storage.put_bytes("uploads/newbie/model.toml", manifest_text("newbie").encode())
    zipped = {**model_entries(astronaut), "model.toml": manifest_text("zipped").encode()}
    local_storage.put_bytes("uploads/zipped.zip", make_zip(zipped))
    local_storage.put_bytes("uploads/broken.zip", b"PK")

    found = model_statuses(instance, local_storage, dg.Definitions([swapped_faces]))
    statuses = {status.model: status for status in found}
    assert statuses["blondie"].state == "registered"
    assert statuses["blondie"].last_run.startswith("SUCCESS (started ")
    assert dict(statuses["blondie"].assets)["swapped_faces"].startswith("materialized 20")
    assert dict(statuses["ghost"].assets)["swapped_faces"] == "never materialized"
    assert statuses["newbie"].state.startswith("not registered (waiting for a face image")
    assert statuses["zipped"].state == "not registered (uploads/zipped.zip not unpacked yet)"
    assert statuses["broken"].state.startswith(
        "not registered (uploads/broken.zip refused: uploads/broken.zip: not a readable zip"
    )

    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    assert main(["models"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "blondie: registered; last run: SUCCESS" in out
    assert "model_uploads" in out and "never observed" in out
