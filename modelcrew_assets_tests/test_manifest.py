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


def test_training_options_kohya_users_tune_are_accepted():
    options = (
        'optimizer = "Adafactor"\nlearning_rate = 0.0003\nunet_lr = 0.0002\ntext_encoder_lr = 0.00005\n'
        'noise_offset = 0.0357\nmin_snr_gamma = 5\nseed = 7\nmixed_precision = "fp16"\ncaption_dropout_rate = 0.05\n'
        'shuffle_caption = true\nkeep_tokens = 2\nbase_model = "base_models/juggernaut_xl.safetensors"\n'
    )
    training = parse_manifest(manifest_text(extra=f"[training]\n{options}"), SOURCE).training
    assert (training.optimizer, training.unet_lr, training.text_encoder_lr) == ("Adafactor", 2e-4, 5e-5)
    assert (training.noise_offset, training.min_snr_gamma, training.seed) == (0.0357, 5, 7)
    assert (training.shuffle_caption, training.keep_tokens, training.mixed_precision) == (True, 2, "fp16")
    assert training.base_model == "base_models/juggernaut_xl.safetensors"


def test_prodigy_defaults_to_its_multiplier_of_one():
    training = parse_manifest(manifest_text(extra='[training]\noptimizer = "Prodigy"\n'), SOURCE).training
    assert training.learning_rate == 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('optimizer = "Lion"', r"\[training\]\.optimizer.*'AdamW8bit', 'AdamW', 'Prodigy' or 'Adafactor'"),
        ('optimizer = "Prodigy"\nlearning_rate = 0.0001', "Prodigy adapts its own step size.*around 1.0"),
        ('optimizer = "Prodigy"\ntext_encoder_lr = 0.5', "Prodigy takes one learning rate"),
        ("learning_rate = 1.5", "far too high for AdamW8bit"),
        ("network_train_unet_only = true\ntext_encoder_lr = 0.00001", "trains no text encoder"),
        ("shuffle_caption = true\nkeep_tokens = 0", "would move the trigger word"),
        ('mixed_precision = "fp32"', r"\[training\]\.mixed_precision"),
        ("noise_offset = 2", r"\[training\]\.noise_offset"),
        ('base_model = "juggernaut.bin"', r"\[training\]\.base_model.*\.safetensors or \.ckpt"),
        ('base_model = "../other/model.safetensors"', r"\[training\]\.base_model"),
    ],
)
def test_bad_training_options_say_what_to_set(options, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest(manifest_text(extra=f"[training]\n{options}\n"), SOURCE)
