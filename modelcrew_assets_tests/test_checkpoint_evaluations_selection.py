"""Checkpoint selection rules on constructed score sets, the thresholds per embedder, and the grid layout."""

from __future__ import annotations

import pytest
from PIL import Image

from modelcrew_assets.checkpoint_evaluations.evaluation_set import (
    EVAL_PROMPTS,
    EVAL_SEEDS,
    column_labels,
    evaluation_jobs,
)
from modelcrew_assets.checkpoint_evaluations.grid import (
    CELL,
    HEADER_HEIGHT,
    LABEL_WIDTH,
    GridRow,
    cell_box,
    grid_image,
)
from modelcrew_assets.checkpoint_evaluations.selection import (
    LBP_EMBEDDER,
    LESS_TRAINING,
    TRAIN_LONGER,
    StepScores,
    Thresholds,
    select_checkpoint,
)
from modelcrew_assets.handoffs import Checkpoint
from modelcrew_assets.manifest import parse_manifest
from modelcrew_assets.worker.messages import DLIB_EMBEDDER, SFACE_EMBEDDER
from modelcrew_assets_tests.builders import manifest_text

T = Thresholds(identity=0.5, margin=0.02, memorization=0.85, cross_prompt=0.85)


def row(step: int, identity: float, memorization: float = 0.3, cross: float = 0.2, faces: float = 1.0) -> StepScores:
    return StepScores(step, identity, faces, memorization, cross)


def typical_run() -> list[StepScores]:
    """Underfit early, a sweet spot in the middle, overfit late (memorized photos, one picture everywhere)."""
    return [
        row(250, 0.12, faces=0.5),
        row(500, 0.41),
        row(750, 0.63),
        row(1000, 0.66),
        row(1250, 0.70, memorization=0.90),
        row(1500, 0.72, memorization=0.95, cross=0.93),
    ]


def test_sweet_spot_is_the_most_alike_checkpoint_that_does_not_memorize():
    selection = select_checkpoint(typical_run(), T)
    assert (selection.step, selection.verdict, selection.action) == (1000, "chosen", "")
    assert "Step 1000" in selection.reason and "0.660" in selection.reason


def test_overfit_late_checkpoints_are_never_chosen_despite_higher_identity():
    scores = typical_run()
    assert max(scores, key=lambda s: s.identity).step == 1500
    assert select_checkpoint(scores, T).step not in (1250, 1500)


def test_within_the_margin_the_earlier_step_wins():
    scores = [row(500, 0.41), row(750, 0.650), row(1000, 0.665), row(1250, 0.664)]
    selection = select_checkpoint(scores, T)
    assert selection.step == 750
    assert "within 0.02 of step 1000" in selection.reason


def test_exact_tie_takes_the_earliest_step():
    selection = select_checkpoint([row(1000, 0.6), row(750, 0.6), row(1250, 0.6)], T)
    assert selection.step == 750


def test_just_outside_the_margin_the_better_later_step_wins():
    selection = select_checkpoint([row(750, 0.60), row(1000, 0.63)], T)
    assert selection.step == 1000


def test_all_underfit_says_so_and_recommends_training_longer():
    selection = select_checkpoint([row(250, 0.05), row(500, 0.21), row(750, 0.33)], T)
    assert (selection.step, selection.verdict, selection.action) == (750, "all_underfit", TRAIN_LONGER)
    assert selection.reason.startswith("No checkpoint reaches identity 0.5")


def test_all_overfit_says_so_and_recommends_less_training():
    scores = [row(250, 0.6, memorization=0.88), row(500, 0.7, memorization=0.93), row(750, 0.7, cross=0.97)]
    selection = select_checkpoint(scores, T)
    assert (selection.verdict, selection.action) == ("all_overfit", LESS_TRAINING)
    assert selection.step == 250  # memorizes least
    assert selection.reason.startswith("All 3 checkpoints memorize the training photos")


def test_same_picture_for_every_prompt_counts_as_memorizing():
    selection = select_checkpoint([row(750, 0.6), row(1000, 0.8, memorization=0.4, cross=0.9)], T)
    assert selection.step == 750


def test_likeness_only_where_it_memorizes_is_no_sweet_spot():
    selection = select_checkpoint([row(250, 0.2), row(500, 0.3), row(750, 0.7, memorization=0.9)], T)
    assert selection.verdict == "no_sweet_spot"
    assert selection.step == 500
    assert "steps 750 reach identity" in selection.reason


def test_manual_override_is_recorded_with_the_automatic_choice():
    selection = select_checkpoint(typical_run(), T, manual_step=1250)
    assert (selection.step, selection.verdict, selection.manual, selection.automatic_step) == (
        1250,
        "manual",
        True,
        1000,
    )
    assert "chosen by hand" in selection.reason and "the rules would take step 1000" in selection.reason


def test_manual_override_of_an_unknown_step_names_the_evaluated_steps():
    with pytest.raises(ValueError, match=r"checkpoint_step 800 is not one of the evaluated steps \(250, 500, 750"):
        select_checkpoint(typical_run(), T, manual_step=800)


def test_no_scores_is_an_error_naming_the_upstream_stage():
    with pytest.raises(ValueError, match="lora_checkpoints"):
        select_checkpoint([], T)


def test_thresholds_default_per_embedder_and_accept_overrides():
    assert Thresholds.for_embedder(SFACE_EMBEDDER).identity == 0.363
    assert Thresholds.for_embedder(DLIB_EMBEDDER).identity == 0.37
    assert Thresholds.for_embedder(LBP_EMBEDDER).identity == 0.40  # stored scores from before dlib
    custom = Thresholds.for_embedder(DLIB_EMBEDDER, identity=0.7, margin=None, memorization=0.9)
    assert (custom.identity, custom.margin, custom.memorization) == (0.7, 0.03, 0.9)
    with pytest.raises(ValueError, match="set identity_threshold"):
        Thresholds.for_embedder("some-other-model")


def test_evaluation_set_is_four_prompts_by_two_seeds_at_1024_with_one_sampler_setting():
    spec = parse_manifest(manifest_text(), "model.toml")
    checkpoints = [
        Checkpoint(step=s, key=f"models/blondie/lora_checkpoints/r/b-step{s:08d}.safetensors", sha256="0", size=1)
        for s in (250, 500)
    ]
    jobs = evaluation_jobs(spec, checkpoints, "models/blondie/checkpoint_evaluations/e1/")
    assert len(EVAL_PROMPTS) >= 4 and len(EVAL_SEEDS) >= 2
    assert len(jobs) == 2 * len(EVAL_PROMPTS) * len(EVAL_SEEDS)
    assert {(j.width, j.height) for j in jobs} == {(1024, 1024)}
    assert len({(j.sampler, j.steps, j.cfg, j.negative_prompt) for j in jobs}) == 1
    assert all(j.prompt.startswith("blondie, ") for j in jobs)
    first = [(j.prompt, j.seed) for j in jobs if j.lora_key == checkpoints[0].key]
    second = [(j.prompt, j.seed) for j in jobs if j.lora_key == checkpoints[1].key]
    assert first == second  # the same set for every checkpoint
    assert len({j.output_key for j in jobs}) == len(jobs)


def solid(colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (1024, 1024), colour)


def test_grid_has_a_row_per_checkpoint_and_a_column_per_prompt_and_seed():
    columns = column_labels()
    colours = [(200, 30 * c, 10) for c in range(len(columns))]
    rows = [
        GridRow("step 250", "id 0.10", [solid(colour) for colour in colours]),
        GridRow("step 500", "id 0.60", [solid((10, 10, 250))] * (len(columns) - 1) + [None], chosen=True),
        GridRow("step 750", "id 0.70", [solid((250, 250, 250))] * len(columns)),
    ]
    grid = grid_image(rows, columns)
    assert grid.size == (LABEL_WIDTH + len(columns) * CELL, HEADER_HEIGHT + 3 * CELL)

    def centre(r: int, c: int) -> tuple[int, int, int]:
        left, top, right, bottom = cell_box(r, c)
        return grid.getpixel(((left + right) // 2, (top + bottom) // 2))

    assert [centre(0, c) for c in range(len(columns))] == colours
    assert centre(1, 0) == (10, 10, 250)
    assert centre(2, len(columns) - 1) == (250, 250, 250)
    missing = centre(1, len(columns) - 1)
    assert missing[0] > missing[2]  # the dark-red "missing" cell, not an image
    assert grid.getpixel((1, HEADER_HEIGHT + CELL + CELL // 2)) == (40, 200, 90)  # chosen row framed
    assert grid.getpixel((1, HEADER_HEIGHT + CELL // 2)) != (40, 200, 90)
