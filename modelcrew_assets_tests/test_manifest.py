import pytest

from modelcrew_assets.manifest import ManifestError, parse_manifest
from modelcrew_assets_tests.builders import manifest_text

SOURCE = "uploads/blondie/model.toml"


def test_valid_manifest_fills_defaults():
    spec = parse_manifest(manifest_text(), SOURCE, expected_name="blondie")
    assert spec.name == "blondie" and spec.trigger == "blondie"
    assert spec.training.max_train_steps == 1500 and spec.training.repeats == 30
    assert spec.swap.faces == "largest" and spec.generation.images == 100


def test_overrides_are_applied():
    spec = parse_manifest(manifest_text(extra="[training]\nrepeats = 12\n[swap]\nenhance = true\n"), SOURCE)
    assert spec.training.repeats == 12 and spec.swap.enhance is True


def test_invalid_toml_names_the_file():
    with pytest.raises(ManifestError, match=f"{SOURCE}: not valid TOML"):
        parse_manifest("[model\nname=", SOURCE)


def test_missing_consent_block_is_an_error():
    text = manifest_text().split("[consent]")[0]
    with pytest.raises(ManifestError, match=r"missing required field \[consent\]"):
        parse_manifest(text, SOURCE)


def test_missing_field_names_section_and_field():
    with pytest.raises(ManifestError, match=r"missing required field \[model\]\.class_word"):
        parse_manifest(manifest_text().replace('class_word = "woman"\n', ""), SOURCE)


def test_unknown_key_lists_the_allowed_keys():
    with pytest.raises(ManifestError) as error:
        parse_manifest(manifest_text(extra="[training]\nmax_steps = 900\n"), SOURCE)
    message = str(error.value)
    assert "unknown key [training].max_steps" in message
    assert "max_train_steps" in message and "save_every_n_steps" in message


def test_unknown_section_lists_the_sections():
    with pytest.raises(ManifestError, match=r"unknown key \[trainig\].*allowed here: model, consent"):
        parse_manifest(manifest_text(extra="[trainig]\nrepeats = 3\n"), SOURCE)


@pytest.mark.parametrize("slug", ["Blondie", "-x", "a" * 41, "blond ie", "../x", "blöndie"])
def test_bad_slug_is_rejected(slug):
    with pytest.raises(ManifestError, match=r"\[model\]\.name"):
        parse_manifest(manifest_text(name=slug), SOURCE)


def test_folder_and_name_must_match():
    with pytest.raises(ManifestError, match="upload folder is 'other'"):
        parse_manifest(manifest_text(), SOURCE, expected_name="other")


@pytest.mark.parametrize("trigger", ["two words", "x", "a,b"])
def test_bad_trigger_word_is_rejected(trigger):
    with pytest.raises(ManifestError, match=r"\[model\]\.trigger"):
        parse_manifest(manifest_text(trigger=trigger), SOURCE)


def test_bad_consent_basis_is_rejected():
    with pytest.raises(ManifestError, match=r"\[consent\]\.basis"):
        parse_manifest(manifest_text().replace('"synthetic"', '"scraped"'), SOURCE)
