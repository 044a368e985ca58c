"""post_metrics: Buffer's metrics and Instagram insights through the live resources against fakes on
127.0.0.1 (measured, not yet measured, unknown, experimental field withdrawn, not enough viewers), and one
simulated run of post_metrics + prompt_pack_performance over a prepared ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import dagster as dg

from modelcrew_assets.generated_batches.prompt_packs import batch_json_key
from modelcrew_assets.handoffs import GeneratedBatch, GeneratedImage, read_index
from modelcrew_assets.post_metrics.assets import post_metrics, prompt_pack_performance
from modelcrew_assets.post_metrics.index import PromptPackPerformance, pack_id
from modelcrew_assets.post_metrics.provider import PostRef
from modelcrew_assets.post_metrics.series import read_history
from modelcrew_assets.post_metrics.simulated import SimulatedMetricsResource
from modelcrew_assets.resources.buffer_metrics import BufferMetricsResource
from modelcrew_assets.resources.instagram_insights import token_env
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.scheduled_posts.ledger import PostEntry, write_entry
from modelcrew_assets_tests.fakes.buffer import FAKE_BUFFER_KEY
from modelcrew_assets_tests.fakes.buffer_metrics import FAKE_INSTAGRAM_TOKEN

NOW = datetime.now(UTC)
PROMPTS = ("blondie, a woman on a beach", "blondie, a woman in a cafe")


def _resource(url: str, graph_url: str = "http://127.0.0.1:9") -> BufferMetricsResource:
    return BufferMetricsResource(
        api_key=FAKE_BUFFER_KEY, api_url=url, instagram_graph_url=graph_url, max_attempts=2, retry_base_delay_s=0
    )


def _read(resource: BufferMetricsResource, model: str, posts: list[PostRef]):
    async def go():
        async with resource.session(model) as session:
            return await session.read(posts)

    return asyncio.run(go())


def _ref(post_id: str, channel: str = "ch-insta", days_ago: float = 4) -> PostRef:
    return PostRef(post_id, "instagram_feed", "instagram", channel, NOW - timedelta(days=days_ago))


def test_buffer_metrics_measured_not_yet_measured_and_unknown_posts(fake_buffer_metrics, monkeypatch):
    monkeypatch.delenv(token_env("blondie"), raising=False)
    due = (NOW - timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    measured = fake_buffer_metrics.add_post("ch-insta", "u1", due, status="sent")
    fresh = fake_buffer_metrics.add_post("ch-insta", "u2", due, status="sent")
    fake_buffer_metrics.measured[measured.id] = {"reach": 1200, "reactions": 80, "comments": 5, "engagementRate": 7.1}
    readings = {
        r.post_id: r
        for r in _read(
            _resource(fake_buffer_metrics.url), "blondie", [_ref(measured.id), _ref(fresh.id), _ref("post-gone")]
        )
    }
    assert readings[measured.id].counts["reach"] == 1200 and readings[measured.id].counts["reactions"] == 80
    assert readings[measured.id].engagement_rate == 7.1 and readings[measured.id].updated_at is not None
    # Buffer's values default to 0 until it has measured a post: read as "no numbers", never as zeros.
    assert readings[fresh.id].counts is None and readings[fresh.id].available
    assert readings["post-gone"].counts is None and "does not list" in readings["post-gone"].note
    sent = fake_buffer_metrics.operations("PostMetrics")[0]
    assert sent["authorization"] == f"Bearer {FAKE_BUFFER_KEY}"
    assert sent["variables"]["input"]["filter"]["channelIds"] == ["ch-insta"]


def test_withdrawn_experimental_field_reads_as_unavailable_not_as_a_failure(fake_buffer_metrics, monkeypatch):
    monkeypatch.delenv(token_env("blondie"), raising=False)
    fake_buffer_metrics.experimental_withdrawn = True
    (reading,) = _read(_resource(fake_buffer_metrics.url), "blondie", [_ref("post-1")])
    assert reading.counts is None and not reading.available
    assert "experimental post metrics are not available" in reading.note and FAKE_BUFFER_KEY not in reading.note


def test_instagram_insights_match_media_by_time_with_the_token_in_the_header(
    fake_buffer_metrics, fake_instagram, monkeypatch
):
    monkeypatch.setenv(token_env("blondie"), FAKE_INSTAGRAM_TOKEN)
    posts = [
        _ref("p-old", days_ago=5),
        _ref("p-few", days_ago=4),
        _ref("p-new", days_ago=1),
        _ref("p-none", days_ago=3),
    ]
    stamp = {p.post_id: (p.due_at + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S+0000") for p in posts}
    fake_instagram.media = [
        {"id": "m3", "timestamp": stamp["p-new"]},
        {"id": "m2", "timestamp": stamp["p-few"]},
        {"id": "m1", "timestamp": stamp["p-old"]},
    ]
    fake_instagram.insights = {"m1": {"reach": 900, "likes": 40, "saved": 6, "views": 1500}}
    fake_instagram.not_enough_viewers = {"m2"}
    readings = _read(_resource(fake_buffer_metrics.url, fake_instagram.url), "blondie", posts)
    instagram = {r.post_id: r for r in readings if r.source == "instagram"}
    assert instagram["p-old"].counts == {"reach": 900, "reactions": 40, "saves": 6, "views": 1500}
    assert instagram["p-few"].counts is None and "Not enough viewers" in instagram["p-few"].note
    assert instagram["p-new"].counts is None  # empty data: nothing yet, not zeros
    assert instagram["p-none"].counts is None and "no Instagram media" in instagram["p-none"].note
    assert not any("access_token" in path or "impressions" in path for path in fake_instagram.requests)
    assert FAKE_INSTAGRAM_TOKEN not in instagram["p-few"].note


def _entry(model: str, index: int, due_at: datetime) -> PostEntry:
    return PostEntry(
        export_id=f"b1-{index:04d}",
        platform="instagram_feed",
        export_key=f"models/{model}/platform_exports/b1/instagram_feed/{index:04d}.jpg",
        source_key=f"models/{model}/generated_batches/b1/{index:04d}.png",
        batch_id="b1",
        channel_id="ch-insta",
        mode="scheduled",
        due_at=due_at,
        publish_key=f"publish/{model}/instagram_feed/{index:04d}.jpg",
        asset_url=f"https://public-media.invalid/{index:04d}.jpg",
        text="",
        state="created",
        post_id=f"sim-{index}",
        updated_at=due_at,
    )


def _image(model: str, index: int) -> GeneratedImage:
    key = f"models/{model}/generated_batches/b1/{index:04d}.png"
    return GeneratedImage(
        key=key,
        sha256="0" * 64,
        prompt=PROMPTS[index % 2],
        negative_prompt="",
        seed=index,
        width=64,
        height=64,
        checkpoint_sha256="0" * 64,
        index=index,
    )


def test_simulated_read_records_statuses_and_feeds_pack_estimates(local_storage: StorageResource, instance):
    model = "blondie"
    instance.add_dynamic_partitions("models", [model])
    ages = [timedelta(days=5)] * 8 + [timedelta(hours=30), timedelta(hours=2), timedelta(days=-1)]
    for index, age in enumerate(ages):
        write_entry(local_storage, model, _entry(model, index, NOW - age))
    batch = GeneratedBatch(model=model, batch_id="b1", images=tuple(_image(model, i) for i in range(len(ages))))
    local_storage.put_bytes(batch_json_key(model, "b1"), batch.model_dump_json().encode(), "application/json")

    result = dg.materialize(
        [post_metrics, prompt_pack_performance],
        partition_key=model,
        resources={"storage": local_storage, "metrics": SimulatedMetricsResource()},
        instance=instance,
    )
    assert result.success
    statuses = {row.post_id: row.status for row in read_history(local_storage, model)}
    assert [statuses[f"sim-{i}"] for i in range(8)] == ["settled"] * 8
    assert statuses["sim-8"] == "early" and statuses["sim-9"] == "pending"  # numbers come after 6 h
    assert "sim-10" not in statuses  # not due yet: not read
    pending = next(row for row in read_history(local_storage, model) if row.post_id == "sim-9")
    assert pending.reach is None and pending.reactions is None
    checks = result.get_asset_check_evaluations()
    assert checks and all(check.passed for check in checks)
    metadata = result.asset_materializations_for_node("post_metrics")[0].metadata
    assert metadata["dry_run"].value is True and "data:image/jpeg;base64" in metadata["engagement_by_day"].value

    estimates = read_index(local_storage, model, PromptPackPerformance)
    assert estimates.dry_run and estimates.settled_posts == 8
    assert {arm.arm: arm.posts for arm in estimates.arms} == {pack_id(PROMPTS[0]): 4, pack_id(PROMPTS[1]): 4}
    assert all(arm.low < arm.mean < arm.high for arm in estimates.arms)


def test_a_post_inside_the_settle_window_is_not_settled():
    from modelcrew_assets.post_metrics.provider import PostReading
    from modelcrew_assets.post_metrics.series import status_of

    posted = NOW - timedelta(hours=71)
    window = timedelta(hours=72)
    assert status_of(PostReading("p", "buffer", None), posted, NOW, window) == "pending"
    assert status_of(PostReading("p", "buffer", None), posted, NOW + timedelta(hours=2), window) == "late"
    assert status_of(PostReading("p", "buffer", {"reach": 5}), posted, NOW, window) == "early"
    assert status_of(PostReading("p", "buffer", {"reach": 5}), posted, NOW + timedelta(hours=2), window) == "settled"
