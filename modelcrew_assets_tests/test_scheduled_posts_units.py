"""The pure parts of scheduled_posts: calendar slots, post text limits, the .ics feed, Buffer's rate limits,
and the [posting] section of model.toml."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from modelcrew_assets.manifest import ManifestError, parse_manifest
from modelcrew_assets.resources.buffer_graphql import CREATE_POST, operation_name, rate_limit_wait_s
from modelcrew_assets.scheduled_posts.calendar import CalendarRules, Candidate, Taken, ordered, plan
from modelcrew_assets.scheduled_posts.ics import calendar_ics
from modelcrew_assets.scheduled_posts.ledger import PostEntry
from modelcrew_assets.scheduled_posts.text import post_text
from modelcrew_assets_tests.builders import manifest_text

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2030, 3, 30, 12, 0, tzinfo=UTC)


def _candidate(export_id: str, batch_rank: int = 0, index: int = 0, identity: float | None = None) -> Candidate:
    return Candidate(
        export_id,
        "instagram_feed",
        f"k/{export_id}.jpg",
        f"s/{export_id}.png",
        f"b{batch_rank}",
        batch_rank,
        index,
        identity=identity,
    )


def _rules(slots=("09:00", "18:30"), max_per_day: int = 2, start: date | None = None) -> CalendarRules:
    return CalendarRules({"instagram_feed": slots}, BERLIN, max_per_day, start)


def test_candidates_go_oldest_batch_first_then_best_identity_then_image_order():
    items = [
        _candidate("new", 1, 0, 0.9),
        _candidate("unscored", 0, 0),
        _candidate("good", 0, 5, 0.8),
        _candidate("best", 0, 9, 0.95),
    ]
    assert [c.export_id for c in ordered(items)] == ["best", "good", "unscored", "new"]


def test_slots_skip_the_past_and_taken_slots_and_respect_the_daily_max_across_dst():
    taken = [Taken("instagram_feed", datetime(2030, 3, 30, 17, 30, tzinfo=UTC))]  # 18:30 CET on the 30th
    assigned = plan([_candidate(str(i)) for i in range(3)], _rules(), taken, NOW)
    # The 30th: 09:00 has passed, 18:30 is taken. Summer time starts on the 31st: 09:00 CEST is 07:00Z.
    assert [slot for _, slot in assigned] == [
        datetime(2030, 3, 31, 7, 0, tzinfo=UTC),
        datetime(2030, 3, 31, 16, 30, tzinfo=UTC),
        datetime(2030, 4, 1, 7, 0, tzinfo=UTC),
    ]


def test_daily_max_below_the_slot_count_leaves_the_later_slots_free():
    assigned = plan(
        [_candidate(str(i)) for i in range(2)], _rules(("09:00", "12:00", "18:30"), 1, date(2030, 5, 1)), [], NOW
    )
    assert [slot.astimezone(BERLIN).strftime("%m-%d %H:%M") for _, slot in assigned] == ["05-01 09:00", "05-02 09:00"]


def test_post_text_keeps_the_disclosure_and_fits_instagrams_limits():
    tags = ", ".join(f'"tag{i}"' for i in range(40))
    spec = parse_manifest(manifest_text(extra=f"[export]\nhashtags = [{tags}]\n"), "m.toml")
    text = post_text("blondie, " + "a very long scene " * 300, spec, "instagram")
    hashtags = [word for word in text.text.split() if word.startswith("#")]
    assert len(text.text) <= 2200 and len(hashtags) == 30
    assert "(AI-generated)" in text.text and {"#aigenerated", "#aiart"} <= set(hashtags)
    assert len(text.title) <= 90 and text.title.endswith("(AI-generated)")


def test_calendar_ics_folds_long_lines_and_escapes_text():
    entry = PostEntry(
        export_id="b-0001",
        platform="tiktok",
        export_key="k/0001.jpg",
        source_key="s/0001.png",
        batch_id="b",
        channel_id="c",
        mode="draft",
        due_at=datetime(2030, 1, 1, 11, tzinfo=UTC),
        publish_key="publish/x",
        asset_url="https://cdn.example.com/x.jpg",
        text="Park, sunny; " + "é" * 80,
        state="created",
        updated_at=NOW,
    )
    ics = calendar_ics("blondie", [entry], NOW).decode()
    assert ics.startswith("BEGIN:VCALENDAR\r\n") and "DTSTART:20300101T110000Z" in ics
    assert all(len(line.encode()) <= 75 for line in ics.split("\r\n"))
    assert "Park\\, sunny\\;" in ics.replace("\r\n ", "")


def test_rate_limit_wait_comes_from_retry_after_then_the_body_then_the_ratelimit_headers():
    body = b'{"errors": [{"extensions": {"code": "RATE_LIMIT_EXCEEDED", "retryAfter": 42}}]}'
    assert rate_limit_wait_s(httpx.Headers({"Retry-After": "7"}), body) == 7
    assert rate_limit_wait_s(httpx.Headers(), body) == 42
    headers = httpx.Headers([("RateLimit", '"100-in-15min";r=0;t=897'), ("RateLimit", '"250-in-1day";r=12;t=86000')])
    assert rate_limit_wait_s(headers, b"{}") == 897
    assert rate_limit_wait_s(httpx.Headers(), b"not json") is None
    assert operation_name(CREATE_POST) == "CreatePost"


def test_posting_section_errors_name_the_field():
    text = manifest_text(extra='[posting]\nmode = "now"\nslots.tiktok = ["9am"]\n')
    with pytest.raises(ManifestError) as error:
        parse_manifest(text, "m.toml")
    assert "[posting].mode" in str(error.value) and "[posting].slots: Value error, tiktok: slot times ['9am']" in str(
        error.value
    )
    assert parse_manifest(manifest_text(), "m.toml").posting.mode == "draft"
