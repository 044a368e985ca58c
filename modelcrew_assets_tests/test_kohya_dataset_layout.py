"""kohya layout rules as pure functions: repeats and epochs, buckets, folder name, reproducible zip."""

from pathlib import Path

from modelcrew_assets.kohya_dataset.assets import caption_files_check
from modelcrew_assets.kohya_dataset.layout import (
    DatasetFile,
    bucket_for,
    bucket_histogram,
    bucket_resolutions,
    build_zip,
    content_version,
    image_folder_name,
    plan_training,
)
from modelcrew_assets.manifest import TrainingSection
from modelcrew_assets.worker.kohya import (
    BUCKET_RESO_STEPS,
    MAX_BUCKET_RESO,
    MIN_BUCKET_RESO,
    Recipe,
    TrainPaths,
    training_flags,
)


def test_studio_recipe_with_twenty_images_gives_two_and_a_half_epochs():
    plan = plan_training(20, TrainingSection())
    assert (plan.repeats, plan.repeats_source, plan.steps_per_epoch, plan.epochs) == (30, "default", 600, 3)
    assert plan.checkpoint_steps == (250, 500, 750, 1000, 1250, 1500)
    assert plan.warnings == ()


def test_default_repeats_are_lowered_when_one_epoch_would_not_fit_the_step_budget():
    plan = plan_training(60, TrainingSection())
    assert (plan.repeats, plan.repeats_source, plan.steps_per_epoch) == (25, "adjusted", 1500)
    assert plan.warnings == ()


def test_repeats_set_in_the_manifest_are_kept_and_a_partial_first_epoch_is_warned_about():
    plan = plan_training(60, TrainingSection(repeats=30))
    assert (plan.repeats, plan.repeats_source, plan.steps_per_epoch) == (30, "manifest", 1800)
    assert "83% into the first epoch" in plan.warnings[0]
    assert "repeats to at most 25" in plan.warnings[0]


def test_checkpoint_boundaries_that_make_no_sense_are_warned_about():
    late = plan_training(10, TrainingSection(save_every_n_steps=2000))
    assert any("only the final checkpoint" in warning for warning in late.warnings)
    early = plan_training(400, TrainingSection(repeats=1, save_every_n_steps=250, max_train_steps=1500))
    assert any("first checkpoint (step 250) comes before" in warning for warning in early.warnings)


def test_buckets_follow_kohya_at_1024_area():
    resos = bucket_resolutions(1024)
    assert (1024, 1024) in resos and (832, 1216) in resos and (1216, 832) in resos
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 1024 * 1024 for w, h in resos)
    assert bucket_for(3000, 2000, resos) == (1216, 832)  # 3:2 -> closest aspect ratio
    assert bucket_for(832, 1216, resos) == (832, 1216)  # already a bucket
    assert bucket_histogram([(512, 512), (2048, 2048), (4000, 6000)], 1024) == {"832x1216": 1, "1024x1024": 2}


def test_buckets_use_the_limits_the_worker_passes_to_kohya():
    # kohya's command-line default max_bucket_reso (1024) would rule out 896x1152 at 1024 area
    assert (896, 1152) in bucket_resolutions(1024) and (896, 1152) not in bucket_resolutions(1024, max_reso=1024)
    assert bucket_histogram([(896, 1152), (1792, 2304)], 1024) == {"896x1152": 2}
    paths = TrainPaths("base", Path("img"), Path("out"), "m", Path("prompts.txt"))
    flags = training_flags(Recipe(), paths)
    passed = {flags[i]: flags[i + 1] for i in range(len(flags) - 1) if flags[i].endswith("bucket_reso")}
    assert passed == {"--min_bucket_reso": str(MIN_BUCKET_RESO), "--max_bucket_reso": str(MAX_BUCKET_RESO)}
    assert flags[flags.index("--bucket_reso_steps") + 1] == str(BUCKET_RESO_STEPS)


def test_the_last_step_is_a_checkpoint_when_the_budget_is_no_multiple_of_the_save_interval():
    assert plan_training(20, TrainingSection(max_train_steps=1400)).checkpoint_steps[-2:] == (1250, 1400)
    assert plan_training(20, TrainingSection(save_every_n_steps=2000)).checkpoint_steps == (1500,)


def test_folder_name_is_repeats_underscore_class_tokens():
    assert image_folder_name(30, "blondie", "young woman") == "30_blondie young woman"


def test_zip_and_version_depend_only_on_the_files():
    files = [DatasetFile("b.txt", b"2"), DatasetFile("a.txt", b"1")]
    assert build_zip(files) == build_zip(list(reversed(files)))
    assert content_version(files) == content_version(list(reversed(files)))
    assert content_version(files) != content_version([DatasetFile("a.txt", b"1"), DatasetFile("b.txt", b"3")])


def test_caption_file_check_fails_on_a_missing_caption_or_a_wrong_repeats_folder():
    good = [
        DatasetFile("img/30_blondie woman/aaaa.jpg", b"jpg"),
        DatasetFile("img/30_blondie woman/aaaa.txt", b"blondie, a woman\n"),
    ]
    assert caption_files_check(build_zip(good), 30, "blondie").passed
    missing = [*good, DatasetFile("img/30_blondie woman/bbbb.jpg", b"jpg")]
    assert "bbbb: has ['.jpg']" in caption_files_check(build_zip(missing), 30, "blondie").metadata["problems"].value
    assert not caption_files_check(build_zip(good), 20, "blondie").passed
    untriggered = [good[0], DatasetFile("img/30_blondie woman/aaaa.txt", b"a woman, blondie\n")]
    assert not caption_files_check(build_zip(untriggered), 30, "blondie").passed
