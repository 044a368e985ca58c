"""The checkpoint_evaluations asset end to end in dry-run: LoraCheckpoints built directly (stand-in kohya
files), the `generate` worker with the stand-in generator on the local executor and on the fake RunPod,
scores, the chosen checkpoint, the grid, scores.json, the checks and the manual override."""

import json

import dagster as dg
import pytest
from PIL import Image

from modelcrew_assets.checkpoint_evaluations.assets import checkpoint_evaluations
from modelcrew_assets.checkpoint_evaluations.grid import CELL, HEADER_HEIGHT, LABEL_WIDTH
from modelcrew_assets.checkpoint_evaluations.report import IDENTITY_CHECK, MEMORIZATION_CHECK
from modelcrew_assets.handoffs import (
    Checkpoint,
    CheckpointEvaluations,
    CheckpointScore,
    LoraCheckpoints,
    SwappedFace,
    SwappedFaces,
    read_index,
    write_index,
)
from modelcrew_assets.imaging import decode_image
from modelcrew_assets.resources.gpu import SimulatedGpuResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import face_prefix, manifest_key
from modelcrew_assets.worker.scoring import load_embedder
from modelcrew_assets.worker.stand_in_trainer import lora_safetensors
from modelcrew_assets.worker.stand_in_trainer import parser as trainer_parser
from modelcrew_assets_tests.builders import jpeg_bytes, manifest_text, target_variants
from modelcrew_assets_tests.fakes.runpod import API_KEY, FakeRunPod
from modelcrew_assets_tests.stand_in_executors import StandInRunPodPodsResource

MODEL = "blondie"
STEPS = (250, 750, 1000, 1500)  # underfit, sweet spot, the same likeness later, overfit
SIZE = 256  # 1024 in production; smaller here for CPU time, the layout and rules are the same


def seed_model(storage: StorageResource, face: Image.Image, steps: tuple[int, ...] = STEPS) -> LoraCheckpoints:
    storage.put_bytes(manifest_key(MODEL), manifest_text(MODEL, MODEL).encode())
    storage.put_bytes(face_prefix(MODEL) + "face.jpg", jpeg_bytes(face))
    swapped = []
    for index, image in enumerate(target_variants(face, 4)):
        put = storage.put_bytes(f"models/{MODEL}/swapped_faces/{index:04d}.jpg", jpeg_bytes(image))
        swapped.append(SwappedFace(key=put.key, sha256=put.sha256, target_key=f"uploads/{MODEL}/targets/{index}.jpg",
                                   target_sha256=put.sha256, width=image.width, height=image.height))  # fmt: skip
    write_index(storage, SwappedFaces(model=MODEL, images=tuple(swapped)))
    args = trainer_parser().parse_args([
        "--network_module", "networks.lora", "--output_name", MODEL, "--max_train_steps", "1500",
        "--learning_rate", "1e-4", "--resolution", "1024,1024", "--mixed_precision", "bf16", "--seed", "42",
    ])  # fmt: skip
    checkpoints = []
    for step in steps:
        key = f"models/{MODEL}/lora_checkpoints/r1/{MODEL}-step{step:08d}.safetensors"
        put = storage.put_bytes(key, lora_safetensors(4, 4.0, step, args))
        checkpoints.append(Checkpoint(step=step, key=key, sha256=put.sha256, size=put.size, uri=put.uri))
    trained = LoraCheckpoints(
        model=MODEL, dry_run=True, run_id="r1", dataset_version="v1", base_model="sd_xl_base_1.0.safetensors",
        checkpoints=tuple(checkpoints),
    )  # fmt: skip
    write_index(storage, trained)
    return trained


def local_gpu() -> SimulatedGpuResource:
    return SimulatedGpuResource(poll_seconds=0.05, pipes_poll_seconds=0.05)


def evaluate(instance, storage, gpu, **config) -> dg.ExecuteInProcessResult:
    if MODEL not in instance.get_dynamic_partitions("models"):
        instance.add_dynamic_partitions("models", [MODEL])
    return dg.materialize(
        [checkpoint_evaluations], partition_key=MODEL, instance=instance, resources={"storage": storage, "gpu": gpu},
        run_config={"ops": {"checkpoint_evaluations": {"config": {"resolution": SIZE, **config}}}}, raise_on_error=False,
    )  # fmt: skip


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    values = result.asset_materializations_for_node("checkpoint_evaluations")[0].metadata
    return {key: getattr(value, "value", value) for key, value in values.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure)


def assert_picks_the_sweet_spot(storage: StorageResource, result: dg.ExecuteInProcessResult) -> dict:
    assert result.success, failure_message(result)
    meta = metadata(result)
    index = read_index(storage, MODEL, CheckpointEvaluations)
    assert (meta["chosen_step"], meta["verdict"], meta["manual_choice"]) == (750, "chosen", False)
    assert index.chosen.step == 750 and index.chosen.key.endswith("step00000750.safetensors")
    assert meta["chosen_checkpoint_uri"] == storage.uri(index.chosen.key)
    assert meta["download"].startswith(f"modelcrew download {MODEL}  (writes {MODEL}-750.safetensors")
    assert meta["reason"] == index.reason and index.reason.startswith("Step 750 is the most like the face")
    assert "within 0.03 of step 1000" in index.reason or "step 1000" not in index.reason
    by_step = {score.step: score for score in index.scores}
    assert by_step[250].verdict == "underfit" and by_step[250].identity < 0.5
    assert by_step[750].verdict == by_step[1000].verdict == "ok"
    assert by_step[1500].verdict == "memorizing" and by_step[1500].memorization > 0.95
    assert checks(result) == {IDENTITY_CHECK: True, MEMORIZATION_CHECK: True}
    assert meta["dry_run"] is True and index.dry_run and meta["embedder"] == load_embedder().name
    return meta


def test_dry_run_on_the_local_executor_picks_the_sweet_spot_and_stores_grid_and_scores(
    local_storage, astronaut, instance
):
    seed_model(local_storage, astronaut)
    result = evaluate(instance, local_storage, local_gpu())
    meta = assert_picks_the_sweet_spot(local_storage, result)
    index = read_index(local_storage, MODEL, CheckpointEvaluations)
    prefix = f"models/{MODEL}/checkpoint_evaluations/{index.run_id}/"
    assert index.grid_key == prefix + "grid.jpg" and index.scores_key == prefix + "scores.json"
    grid = decode_image(local_storage.get_bytes(index.grid_key), "grid.jpg")
    assert grid.size == (LABEL_WIDTH + 8 * CELL, HEADER_HEIGHT + len(STEPS) * CELL)  # 4 prompts x 2 seeds
    samples = [o.key for o in local_storage.list(prefix + "samples/")]
    assert len(samples) == len(STEPS) * 8 == meta["samples"]
    assert decode_image(local_storage.get_bytes(samples[0]), samples[0]).size == (SIZE, SIZE)
    document = json.loads(local_storage.get_bytes(index.scores_key))
    assert [c["step"] for c in document["checkpoints"]] == list(STEPS)
    assert document["selection"]["step"] == 750 and len(document["checkpoints"][0]["samples"]) == 8
    table = meta["scores"]
    assert [record.data["step"] for record in table.records] == list(STEPS)
    assert [record.data["chosen"] for record in table.records] == [False, True, False, False]
    assert meta["grid"].startswith("![checkpoints x prompt/seed](data:image/jpeg;base64,")
    assert meta["dagster/row_count"] == len(STEPS) and meta["backend"] == "local"


def previous_evaluation(trained: LoraCheckpoints) -> CheckpointEvaluations:
    rows = {250: (0.2, 0.3, 0.1), 750: (0.9, 0.2, 0.1), 1000: (0.9, 0.2, 0.1), 1500: (0.85, 0.99, 1.0)}
    scores = tuple(
        CheckpointScore(step=step, identity=i, face_detection_rate=1.0, memorization=m, diversity=1 - c,
                        cross_prompt_similarity=c, memorization_max=m)
        for step, (i, m, c) in rows.items()
    )  # fmt: skip
    return CheckpointEvaluations(
        model=MODEL, dry_run=True, run_id="prev0001", scores=scores, chosen=trained.checkpoints[1],
        reason="Step 750 ...", lora_run_id=trained.run_id, verdict="chosen", embedder="lbp-grid-v1",
    )  # fmt: skip


def test_manual_override_reuses_the_scores_and_is_recorded_as_manual(local_storage, astronaut, instance):
    trained = seed_model(local_storage, astronaut)
    write_index(local_storage, previous_evaluation(trained))
    unusable = SimulatedGpuResource(python="/nonexistent/python")  # any render attempt would fail
    result = evaluate(instance, local_storage, unusable, checkpoint_step=1500)
    assert result.success, failure_message(result)
    meta = metadata(result)
    index = read_index(local_storage, MODEL, CheckpointEvaluations)
    assert (index.chosen.step, index.manual, index.verdict) == (1500, True, "manual")
    assert (meta["chosen_step"], meta["manual_choice"], meta["automatic_step"]) == (1500, True, 750)
    assert "chosen by hand" in meta["reason"] and "the rules would take step 750" in meta["reason"]
    assert meta["reused_scores_from"] == "prev0001" and "gpu_job_id" not in meta
    assert [s.step for s in index.scores] == list(STEPS) and index.lora_run_id == "r1"
    assert checks(result) == {IDENTITY_CHECK: True, MEMORIZATION_CHECK: False}  # the checks judge the manual pick


def test_override_after_retraining_evaluates_the_new_checkpoints_again(local_storage, astronaut, instance):
    trained = seed_model(local_storage, astronaut)
    write_index(local_storage, previous_evaluation(trained).model_copy(update={"lora_run_id": "an-older-run"}))
    unusable = SimulatedGpuResource(python="/nonexistent/python")
    result = evaluate(instance, local_storage, unusable, checkpoint_step=750)
    assert "/nonexistent/python" in failure_message(result)  # it tried to render: old scores are not reused


def test_manual_override_of_a_step_that_was_not_saved_fails_before_rendering(local_storage, astronaut, instance):
    seed_model(local_storage, astronaut)
    unusable = SimulatedGpuResource(python="/nonexistent/python")
    result = evaluate(instance, local_storage, unusable, checkpoint_step=800)
    assert not result.success
    message = failure_message(result)
    assert (
        "checkpoint_step 800 is not one of the saved steps of lora_checkpoints run r1 (250, 750, 1000, 1500)" in message
    )


def test_without_lora_checkpoints_the_error_names_the_stage_to_run_first(local_storage, instance):
    result = evaluate(instance, local_storage, local_gpu())
    assert "materialize lora_checkpoints for partition 'blondie' first" in failure_message(result)


@pytest.mark.slow
def test_dry_run_through_the_fake_runpod_picks_the_sweet_spot_and_terminates_the_pod(
    s3_storage, astronaut, instance, fake_runpod: FakeRunPod
):
    seed_model(s3_storage, astronaut)
    gpu = StandInRunPodPodsResource(
        api_key=API_KEY, graphql_url=fake_runpod.url, gpu_types=["NVIDIA GeForce RTX 4090"],
        poll_seconds=0.2, pipes_poll_seconds=0.2, pipes_flush_seconds=1, max_runtime_minutes=5,
    )  # fmt: skip
    result = evaluate(instance, s3_storage, gpu)
    meta = assert_picks_the_sweet_spot(s3_storage, result)
    pod = fake_runpod.only_pod()
    assert pod.terminated is not None and meta["gpu_job_id"] == pod.id
    assert meta["backend"] == "runpod_pod" and meta["cost_usd"] > 0
    index = read_index(s3_storage, MODEL, CheckpointEvaluations)
    assert s3_storage.exists(index.grid_key) and index.grid_key.startswith(f"models/{MODEL}/checkpoint_evaluations/")


def test_an_underfit_automatic_choice_blocks_generation_and_a_manual_one_only_warns(local_storage, astronaut, instance):
    seed_model(local_storage, astronaut, steps=(250,))
    automatic = evaluate(instance, local_storage, local_gpu())
    assert not automatic.success and "blocking asset check failed" in failure_message(automatic)
    assert metadata(automatic)["verdict"] == "all_underfit"

    manual = evaluate(instance, local_storage, local_gpu(), checkpoint_step=250)
    assert manual.success and checks(manual)[IDENTITY_CHECK] is False
