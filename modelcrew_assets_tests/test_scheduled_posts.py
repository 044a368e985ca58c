"""scheduled_posts through dg.materialize against the fake Buffer GraphQL server."""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter

import pytest

from modelcrew_assets.generated_reels.index import scores_key
from modelcrew_assets.resources.buffer import BufferSession
from modelcrew_assets.resources.captioner import CaptionerResource
from modelcrew_assets.resources.selection import resources_from_env
from modelcrew_assets.scheduled_posts.backlog import withdrawn_key
from modelcrew_assets.scheduled_posts.ledger import read_ledger
from modelcrew_assets.scheduled_posts.simulated import SimulatedPostingResource
from modelcrew_assets_tests.fakes.buffer import FAKE_BUFFER_KEY
from modelcrew_assets_tests.fakes.openai_compatible import FAKE_MODEL, caption
from modelcrew_assets_tests.scheduled_posts_setup import (
    MODEL,
    POSTING,
    PUBLIC_BASE,
    export_batch,
    live_buffer,
    materialize,
    metadata_of,
    source_sha256,
    upload_manifest,
)


def _created(fake) -> list[dict]:
    return [request["variables"]["input"] for request in fake.operations("CreatePost")]


def _assert_no_duplicates(fake) -> None:
    urls = Counter((post.channel_id, url) for post in fake.live_posts() for url in post.media_urls)
    assert all(count == 1 for count in urls.values()), urls


def test_drafts_fill_the_configured_slots_in_the_models_timezone(instance, local_storage, fake_buffer):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=3)
    result = materialize(instance, local_storage, live_buffer(fake_buffer))
    sent = _created(fake_buffer)
    by_channel = {c: sorted(i["dueAt"] for i in sent if i["channelId"] == c) for c in ("ch-insta", "ch-tiktok")}
    # Europe/Berlin is UTC+1 in January: 09:00 and 18:30 local, at most 2 a day; tiktok one slot a day.
    assert by_channel["ch-insta"] == [
        "2030-01-01T08:00:00.000Z",
        "2030-01-01T17:30:00.000Z",
        "2030-01-02T08:00:00.000Z",
    ]
    assert by_channel["ch-tiktok"] == [
        "2030-01-01T11:00:00.000Z",
        "2030-01-02T11:00:00.000Z",
        "2030-01-03T11:00:00.000Z",
    ]
    assert all(i["saveToDraft"] is True and i["mode"] == "customScheduled" for i in sent)
    instagram = next(i for i in sent if i["channelId"] == "ch-insta")
    assert instagram["metadata"] == {"instagram": {"type": "post", "shouldShareToFeed": True, "isAiGenerated": True}}
    assert instagram["assets"][0]["image"]["url"].startswith(f"{PUBLIC_BASE}/{MODEL}/instagram_feed/")
    assert "(AI-generated)" in instagram["text"] and "#aigenerated" in instagram["text"]
    tiktok = next(i for i in sent if i["channelId"] == "ch-tiktok")
    assert (
        tiktok["metadata"]["tiktok"]["title"].endswith("(AI-generated)")
        and len(tiktok["metadata"]["tiktok"]["title"]) <= 90
    )
    assert all(
        local_storage.exists(f"publish/{MODEL}/{i['assets'][0]['image']['url'].split(f'/{MODEL}/', 1)[1]}")
        for i in sent
    )
    assert all(check.passed for check in result.get_asset_check_evaluations())
    metadata = metadata_of(result)
    assert metadata["posts_created"].value == 6 and metadata["dagster/row_count"].value == 6
    assert "data:image/jpeg;base64," in metadata["upcoming_posts"].value
    ics = local_storage.get_bytes(f"models/{MODEL}/scheduled_posts/calendar.ics").decode()
    assert ics.count("BEGIN:VEVENT") == 6 and "DTSTART:20300101T080000Z" in ics

    again = materialize(instance, local_storage, live_buffer(fake_buffer))
    assert len(_created(fake_buffer)) == 6 and metadata_of(again)["posts_created"].value == 0
    _assert_no_duplicates(fake_buffer)


def test_oldest_batch_gets_the_earliest_slots(instance, local_storage, fake_buffer):
    upload_manifest(local_storage, posting="")  # no channels yet: batch-a waits in the backlog
    export_batch(local_storage, "batch-a", images=1)
    materialize(instance, local_storage, live_buffer(fake_buffer))
    assert not _created(fake_buffer)
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-b", images=1)
    materialize(instance, local_storage, live_buffer(fake_buffer))
    entries = read_ledger(local_storage, MODEL)
    instagram = sorted((e.due_at, e.batch_id) for e in entries.values() if e.platform == "instagram_feed")
    assert [batch for _, batch in instagram] == ["batch-a", "batch-b"]


def test_scheduled_mode_posts_at_the_slot_and_queue_mode_lets_buffer_choose(instance, local_storage, fake_buffer):
    upload_manifest(local_storage, mode="scheduled")
    export_batch(local_storage, "batch-a", images=1)
    materialize(instance, local_storage, live_buffer(fake_buffer))
    assert all("saveToDraft" not in i and i["mode"] == "customScheduled" for i in _created(fake_buffer))
    assert {p.status for p in fake_buffer.live_posts()} == {"scheduled"}

    upload_manifest(local_storage, mode="queue")
    export_batch(local_storage, "batch-b", images=1)
    materialize(instance, local_storage, live_buffer(fake_buffer))
    queued = _created(fake_buffer)[2:]
    assert len(queued) == 2 and all(i["mode"] == "addToQueue" and "dueAt" not in i for i in queued)
    assert all(e.due_at is not None for e in read_ledger(local_storage, MODEL).values())  # Buffer's answer


def test_429_with_retry_after_in_the_body_is_waited_out_and_nothing_is_posted_twice(
    instance, local_storage, fake_buffer
):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=1)
    fake_buffer.create_faults.extend(["rate_limited"])
    started = time.monotonic()
    result = materialize(instance, local_storage, live_buffer(fake_buffer))
    assert time.monotonic() - started >= 1.0  # retryAfter = 1 s, though the backoff itself is 0
    assert len(_created(fake_buffer)) == 3 and len(fake_buffer.live_posts()) == 2
    assert metadata_of(result)["posts_created"].value == 2


def test_answer_lost_after_buffer_created_the_post_is_reconciled_not_resent(instance, local_storage, fake_buffer):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=2)
    fake_buffer.create_faults.extend(["answer_lost"])
    result = materialize(instance, local_storage, live_buffer(fake_buffer))
    assert len(_created(fake_buffer)) == 4 and len(fake_buffer.live_posts()) == 4
    assert metadata_of(result)["posts_reconciled"].value == 1
    assert fake_buffer.operations("Posts")  # the channel's posts were listed around that dueAt
    assert {e.state for e in read_ledger(local_storage, MODEL).values()} == {"created"}
    _assert_no_duplicates(fake_buffer)


def test_gateway_timeout_after_buffer_created_the_post_is_reconciled_not_resent(instance, local_storage, fake_buffer):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=1)
    fake_buffer.create_faults.extend(["gateway_timeout"])
    result = materialize(instance, local_storage, live_buffer(fake_buffer))
    assert len(_created(fake_buffer)) == 2 and len(fake_buffer.live_posts()) == 2
    assert metadata_of(result)["posts_reconciled"].value == 1
    _assert_no_duplicates(fake_buffer)


def test_connection_dropped_before_create_stays_unsure_then_the_next_run_sends_it_once(
    instance, local_storage, fake_buffer
):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=1)
    fake_buffer.create_faults.extend(["dropped"])
    materialize(instance, local_storage, live_buffer(fake_buffer))
    assert len(fake_buffer.live_posts()) == 1
    assert sorted(e.state for e in read_ledger(local_storage, MODEL).values()) == ["created", "sending"]
    second = materialize(instance, local_storage, live_buffer(fake_buffer))
    assert metadata_of(second)["posts_resent_after_reconciling"].value == 1
    assert len(fake_buffer.live_posts()) == 2
    _assert_no_duplicates(fake_buffer)


def test_crash_between_ledger_write_and_answer_adopts_the_post_on_restart(
    instance, local_storage, fake_buffer, monkeypatch
):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=1)
    real_create = BufferSession.create_post

    async def create_then_die(self, request):
        await real_create(self, request)
        raise SystemError("worker process killed after Buffer accepted the post")

    monkeypatch.setattr(BufferSession, "create_post", create_then_die)
    crashed = materialize(instance, local_storage, live_buffer(fake_buffer), raise_on_error=False)
    assert not crashed.success
    assert [e.state for e in read_ledger(local_storage, MODEL).values()] == ["sending"]
    monkeypatch.setattr(BufferSession, "create_post", real_create)
    restarted = materialize(instance, local_storage, live_buffer(fake_buffer))
    assert metadata_of(restarted)["posts_reconciled"].value == 1
    assert len(fake_buffer.live_posts()) == 2 and len(_created(fake_buffer)) == 2
    _assert_no_duplicates(fake_buffer)


def test_daily_limit_reached_stops_that_channel_and_the_rest_waits(instance, local_storage, fake_buffer):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=2)
    fake_buffer.daily_limit = 1
    result = materialize(instance, local_storage, live_buffer(fake_buffer))
    metadata = metadata_of(result)
    assert metadata["daily_limit_reached"].value == "instagram_feed"
    assert metadata["posts_rejected"].value == 1
    states = Counter((e.platform, e.state) for e in read_ledger(local_storage, MODEL).values())
    assert states[("instagram_feed", "rejected")] == 1 and states[("tiktok", "created")] == 2


def test_unknown_channel_fails_naming_it_and_the_channels_buffer_has(instance, local_storage, fake_buffer):
    upload_manifest(
        local_storage, posting='[posting]\nchannels.instagram_feed = {service = "instagram", name = "nobody"}\n'
    )
    export_batch(local_storage, "batch-a", images=1)
    with pytest.raises(
        Exception, match=r"no connected channel for instagram_feed \(instagram 'nobody'\).*'blondie' \(ch-insta\)"
    ):
        materialize(instance, local_storage, live_buffer(fake_buffer))
    assert not _created(fake_buffer)


def test_withdrawn_export_deletes_its_unsent_post_and_is_not_posted_again(instance, local_storage, fake_buffer):
    upload_manifest(local_storage)
    exports = export_batch(local_storage, "batch-a", images=2)
    materialize(instance, local_storage, live_buffer(fake_buffer))
    first, second = exports.exports[0], exports.exports[2]
    # A full key withdraws that platform's export; a file name, the image on every platform.
    withdrawals = f"# pulled by the studio\n{first.key}\n{second.key.rsplit('/', 1)[1]}  # whole image\n"
    local_storage.put_bytes(withdrawn_key(MODEL), withdrawals.encode())
    result = materialize(instance, local_storage, live_buffer(fake_buffer))
    assert metadata_of(result)["posts_deleted_for_withdrawn_exports"].value == 3
    assert len(fake_buffer.operations("DeletePost")) == 3 and len(fake_buffer.live_posts()) == 1
    assert fake_buffer.live_posts()[0].channel_id == "ch-tiktok"
    materialize(instance, local_storage, live_buffer(fake_buffer))
    assert len(_created(fake_buffer)) == 4


def test_no_api_key_in_any_log_metadata_ledger_or_url(instance, local_storage, fake_buffer):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=1)
    fake_buffer.create_faults.extend(["rate_limited", "answer_lost"])
    result = materialize(instance, local_storage, live_buffer(fake_buffer))
    logs = " ".join(str(record.user_message) for record in instance.all_logs(result.run_id))
    stored = b" ".join(local_storage.get_bytes(o.key) for o in local_storage.list(f"models/{MODEL}/scheduled_posts/"))
    assert FAKE_BUFFER_KEY not in logs and FAKE_BUFFER_KEY not in str(metadata_of(result))
    assert FAKE_BUFFER_KEY.encode() not in stored
    assert {r["authorization"] for r in fake_buffer.requests} == {f"Bearer {FAKE_BUFFER_KEY}"}
    assert all(FAKE_BUFFER_KEY not in str(r["variables"]) for r in fake_buffer.requests)


def test_live_posting_refuses_without_a_public_media_base_url_and_sends_no_presigned_url(
    instance, local_storage, fake_buffer
):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=1)
    with pytest.raises(Exception, match="MODELCREW_PUBLIC_MEDIA_BASE_URL"):
        materialize(instance, local_storage, live_buffer(fake_buffer, public_media_base_url=None))
    assert not _created(fake_buffer)
    materialize(instance, local_storage, live_buffer(fake_buffer))
    urls = [i["assets"][0]["image"]["url"] for i in _created(fake_buffer)]
    assert urls and all(u.startswith(PUBLIC_BASE) and "X-Amz-" not in u and "Signature" not in u for u in urls)


def test_missing_api_key_names_the_variable_before_anything_is_sent(instance, local_storage, fake_buffer):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=1)
    with pytest.raises(Exception, match="BUFFER_API_KEY"):
        materialize(instance, local_storage, live_buffer(fake_buffer, api_key=None))
    assert not fake_buffer.requests


def test_dry_run_records_posts_in_storage_labelled_and_sends_nothing(instance, local_storage, monkeypatch):
    monkeypatch.setenv("MODELCREW_DRY_RUN", "1")
    posting = resources_from_env()["posting"]
    assert isinstance(posting, SimulatedPostingResource)
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=1)
    result = materialize(instance, local_storage, posting)
    assert metadata_of(result)["dry_run"].value is True
    records = list(local_storage.list(f"models/{MODEL}/scheduled_posts/simulated/"))
    assert len(records) == 2 and all(b'"dry_run": true' in local_storage.get_bytes(r.key) for r in records)
    assert all(e.dry_run for e in read_ledger(local_storage, MODEL).values())
    assert materialize(instance, local_storage, posting).success
    assert len(list(local_storage.list(f"models/{MODEL}/scheduled_posts/simulated/"))) == 2


def test_live_selection_binds_buffer_with_its_settings(monkeypatch):
    monkeypatch.setenv("BUFFER_API_KEY", "k")
    monkeypatch.setenv("MODELCREW_PUBLIC_MEDIA_BASE_URL", PUBLIC_BASE)
    posting = resources_from_env()["posting"].process_config_and_initialize()
    assert type(posting).__name__ == "BufferResource" and not posting.simulated
    assert posting.public_url(f"publish/{MODEL}/tiktok/a.jpg") == f"{PUBLIC_BASE}/{MODEL}/tiktok/a.jpg"


def test_channel_removed_in_buffer_after_caching_fails_the_run_and_creates_nothing_there(
    instance, local_storage, fake_buffer
):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=1)
    materialize(instance, local_storage, live_buffer(fake_buffer))
    fake_buffer.channels = [c for c in fake_buffer.channels if c["id"] != "ch-tiktok"]
    export_batch(local_storage, "batch-b", images=1)
    with pytest.raises(Exception, match=r"NOT_FOUND: channel ch-tiktok not found; fix the setup"):
        materialize(instance, local_storage, live_buffer(fake_buffer))
    tiktok_b = [
        e for e in read_ledger(local_storage, MODEL).values() if e.batch_id == "batch-b" and e.platform == "tiktok"
    ]
    assert [e.state for e in tiktok_b] == ["rejected"]
    assert sum(1 for p in fake_buffer.live_posts() if p.channel_id == "ch-tiktok") == 1


def test_a_key_buffer_does_not_accept_fails_with_its_error_code_and_not_the_key(instance, local_storage, fake_buffer):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=1)
    with pytest.raises(Exception, match="UNAUTHORIZED: Invalid or missing API key") as error:
        materialize(instance, local_storage, live_buffer(fake_buffer, api_key="not-the-key"))
    assert "not-the-key" not in str(error.value)


def test_captions_edited_in_the_csv_are_used_for_unsent_posts_with_the_disclosure_kept(
    instance, local_storage, fake_buffer
):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=1)
    fake_buffer.daily_limit = 0  # every channel at its limit: nothing is sent, the CSV lists what waits
    materialize(instance, local_storage, live_buffer(fake_buffer))
    written = local_storage.get_bytes(f"models/{MODEL}/scheduled_posts/post_texts.csv").decode()
    rows = list(csv.DictReader(io.StringIO(written)))
    assert {row["state"] for row in rows} == {"waiting"} and len(rows) == 2
    assert rows[0]["caption"].endswith("(AI-generated)")
    rows[0]["caption"] = "Sunday in the park with friends"
    edited = io.StringIO()
    writer = csv.DictWriter(edited, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    local_storage.put_bytes(f"uploads/{MODEL}/posting/post_texts.csv", edited.getvalue().encode())
    fake_buffer.daily_limit = 10
    materialize(instance, local_storage, live_buffer(fake_buffer))
    texts = {i["channelId"]: i["text"] for i in _created(fake_buffer)}
    edited_text = texts["ch-insta" if rows[0]["platform"] == "instagram_feed" else "ch-tiktok"]
    assert edited_text.startswith("Sunday in the park with friends. (AI-generated)\n\n#blondie #fashion #aigenerated")


def test_publish_copies_ledger_and_calendar_live_on_either_storage(instance, storage, fake_buffer):
    upload_manifest(storage)
    export_batch(storage, "batch-a", images=1)
    materialize(instance, storage, live_buffer(fake_buffer))
    assert len(list(storage.list(f"publish/{MODEL}/"))) == 2
    assert len(read_ledger(storage, MODEL)) == 2 and storage.exists(f"models/{MODEL}/scheduled_posts/calendar.ics")


def test_the_captioner_writes_each_pictures_caption_once_and_the_disclosure_and_hashtags_are_always_ours(
    instance, local_storage, fake_buffer, fake_openai
):
    upload_manifest(local_storage, posting=POSTING.format(mode="draft") + 'captions = "captioner"\n')
    export_batch(local_storage, "batch-a", images=1)
    fake_openai.script(caption('"Golden hour on the balcony, coffee in hand." #sunset #AIgenerated'))
    captioner = CaptionerResource(base_url=fake_openai.base_url, api_key=fake_openai.api_key, model=FAKE_MODEL)
    materialize(instance, local_storage, live_buffer(fake_buffer), captioner=captioner)
    # One picture, two platforms: asked once (the export's own JPEG), the answer cleaned, our tail added.
    assert len(fake_openai.requests) == 1
    expected = "Golden hour on the balcony, coffee in hand. (AI-generated)\n\n#blondie #fashion #aigenerated #aiart"
    assert {i["text"] for i in _created(fake_buffer)} == {expected}
    export_batch(local_storage, "batch-b", images=1)
    materialize(instance, local_storage, live_buffer(fake_buffer), captioner=captioner)
    assert len(fake_openai.requests) == 2  # only the new picture: what was written is kept, sent posts too


def test_within_a_batch_the_stills_most_like_the_model_are_posted_first(instance, local_storage, fake_buffer):
    upload_manifest(local_storage)
    export_batch(local_storage, "batch-a", images=3)
    keys = [f"models/{MODEL}/generated_batches/batch-a/{index:04d}.png" for index in range(3)]
    likeness = {source_sha256(keys[0]): 0.41, source_sha256(keys[1]): 0.58, source_sha256(keys[2]): 0.77}
    local_storage.put_bytes(scores_key(MODEL, "batch-a"), json.dumps(likeness).encode())  # as generated_reels left it
    materialize(instance, local_storage, live_buffer(fake_buffer))
    tiktok = sorted(
        (i["dueAt"], i["assets"][0]["image"]["url"]) for i in _created(fake_buffer) if i["channelId"] == "ch-tiktok"
    )
    assert [url.rsplit("/", 1)[-1][:4] for _, url in tiktok] == ["0002", "0001", "0000"]
