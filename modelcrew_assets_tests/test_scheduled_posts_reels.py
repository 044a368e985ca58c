"""Reels from generated_reels posted by scheduled_posts: Instagram Reels and TikTok videos in the images'
calendar, against the fake Buffer (which checks video assets as Buffer's schema does)."""

from __future__ import annotations

import httpx

from modelcrew_assets.object_store import ObjectStore
from modelcrew_assets.resources.buffer_graphql import CREATE_POST
from modelcrew_assets.scheduled_posts.backlog import withdrawn_key
from modelcrew_assets.scheduled_posts.ledger import read_ledger
from modelcrew_assets_tests.fakes.buffer import FAKE_BUFFER_KEY
from modelcrew_assets_tests.scheduled_posts_setup import (
    MODEL,
    POSTING,
    PUBLIC_BASE,
    export_batch,
    export_reel,
    live_buffer,
    materialize,
    metadata_of,
    upload_manifest,
)

# The images' calendar, plus Instagram Reels on the Instagram channel; reels share TikTok's one daily slot.
REELS_POSTING = (
    POSTING.format(mode="draft") + 'channels.instagram_reels = {id = "ch-insta"}\nslots.instagram_reels = ["20:00"]\n'
)


def _created(fake) -> list[dict]:
    return [request["variables"]["input"] for request in fake.operations("CreatePost")]


def test_reels_go_out_as_instagram_reels_and_tiktok_videos_in_the_images_calendar(
    instance, local_storage, fake_buffer, monkeypatch
):
    upload_manifest(local_storage, posting=REELS_POSTING)
    export_batch(local_storage, "batch-a", images=1)
    reel = export_reel(local_storage, "batch-a", image=0)
    content_types: dict[str, str | None] = {}
    real_put = ObjectStore.put_bytes

    def recording_put(self, key, data, content_type=None):
        content_types[key] = content_type
        return real_put(self, key, data, content_type)

    monkeypatch.setattr(ObjectStore, "put_bytes", recording_put)
    result = materialize(instance, local_storage, live_buffer(fake_buffer))

    sent = _created(fake_buffer)
    videos = {i["channelId"]: i for i in sent if "video" in i["assets"][0]}
    file = reel.video_key.rsplit("/", 1)[1]
    assert videos["ch-insta"]["assets"] == [
        {"video": {"url": f"{PUBLIC_BASE}/{MODEL}/instagram_reels/{file}", "metadata": {"thumbnailOffset": 500}}}
    ]
    assert videos["ch-insta"]["metadata"] == {
        "instagram": {"type": "reel", "shouldShareToFeed": True, "isAiGenerated": True}
    }
    assert videos["ch-insta"]["dueAt"] == "2030-01-01T19:00:00.000Z"  # 20:00 in Berlin
    assert videos["ch-tiktok"]["metadata"] == {"tiktok": {"isAiGenerated": True}}
    assert (
        "Walking in a park number 0" in videos["ch-tiktok"]["text"] and "(AI-generated)" in videos["ch-tiktok"]["text"]
    )
    # One TikTok calendar: the reel (scored) takes the first 12:00 slot, the photo of the same still the next.
    photo = next(i for i in sent if i["channelId"] == "ch-tiktok" and "image" in i["assets"][0])
    assert (videos["ch-tiktok"]["dueAt"], photo["dueAt"]) == ("2030-01-01T11:00:00.000Z", "2030-01-02T11:00:00.000Z")
    published = f"publish/{MODEL}/tiktok/{file}"
    assert content_types[published] == "video/mp4"
    assert local_storage.get_bytes(published) == local_storage.get_bytes(reel.video_key)
    assert all(check.passed for check in result.get_asset_check_evaluations())
    metadata = metadata_of(result)
    assert metadata["posts_created"].value == 4 and "tiktok (video)" in metadata["upcoming_posts"].value

    again = materialize(instance, local_storage, live_buffer(fake_buffer))
    assert metadata_of(again)["posts_created"].value == 0 and len(_created(fake_buffer)) == 4
    assert read_ledger(local_storage, MODEL)[(f"reel-{reel.key}", "tiktok")].media == "video"


def test_a_reel_whose_answer_was_lost_is_found_by_its_url_and_withdrawing_its_still_deletes_it(
    instance, local_storage, fake_buffer
):
    upload_manifest(local_storage, posting=REELS_POSTING)
    export_batch(local_storage, "batch-a", images=2)
    reel = export_reel(local_storage, "batch-a", image=1)
    fake_buffer.create_faults.append("answer_lost")  # the first create sent: the Instagram reel (scored first)
    result = materialize(instance, local_storage, live_buffer(fake_buffer))
    assert metadata_of(result)["posts_reconciled"].value == 1 and "video" in _created(fake_buffer)[0]["assets"][0]
    assert len(_created(fake_buffer)) == len(fake_buffer.live_posts()) == 6
    assert read_ledger(local_storage, MODEL)[(f"reel-{reel.key}", "instagram_reels")].state == "created"

    local_storage.put_bytes(withdrawn_key(MODEL), b"batch-a-0001  # the still, so its reel too\n")
    again = materialize(instance, local_storage, live_buffer(fake_buffer))
    assert metadata_of(again)["posts_deleted_for_withdrawn_exports"].value == 4  # the photo x2, the reel x2
    assert sorted(p.media_urls[0].rsplit("/", 2)[1] for p in fake_buffer.live_posts()) == ["instagram_feed", "tiktok"]
    assert all("/0000-" in p.media_urls[0] for p in fake_buffer.live_posts())


def test_the_fake_buffer_refuses_video_assets_as_buffers_schema_does(fake_buffer):
    url = f"{PUBLIC_BASE}/{MODEL}/instagram_reels/r.mp4"

    def create(asset: dict) -> dict:
        post = {
            "channelId": "ch-insta", "text": "t", "schedulingType": "automatic", "mode": "addToQueue",
            "assets": [asset], "metadata": {"instagram": {"type": "reel", "shouldShareToFeed": True}},
        }  # fmt: skip
        body = {"query": CREATE_POST, "variables": {"input": post}, "operationName": "CreatePost"}
        return httpx.post(fake_buffer.url, json=body, headers={"Authorization": f"Bearer {FAKE_BUFFER_KEY}"}).json()

    def refusal(answer: dict) -> str:
        return (
            answer["errors"][0]["extensions"]["code"]
            if answer.get("errors")
            else answer["data"]["createPost"]["__typename"]
        )

    assert refusal(create({"video": {"url": url, "thumbnailUrl": url}})) == "InvalidInputError"
    assert refusal(create({"image": {"url": url}})) == "InvalidInputError"  # a reel is one video
    assert refusal(create({"video": {"url": url, "metadata": {"thumbnailOffset": "0:01"}}})) == "BAD_USER_INPUT"
    assert refusal(create({"video": {"url": url, "poster": url}})) == "BAD_USER_INPUT"
    assert refusal(create({"video": {"url": url, "metadata": {"thumbnailOffset": 500}}})) == "PostActionSuccess"
    assert len(fake_buffer.live_posts()) == 1
