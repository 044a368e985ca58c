"""scheduled_posts: approved exports become Buffer drafts / scheduled posts on the model's calendar.

Pure parts: calendar (slots), text, ics, ledger and backlog (storage only); flow.py drives a run through
the provider interface in posting.py; assets.py and checks.py tie it to Dagster. `defs` loads lazily, as
the other stages' packages do, so importing the pure parts needs no Dagster definitions.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("defs", "scheduled_posts"):
        import dagster as dg

        from modelcrew_assets.scheduled_posts.assets import scheduled_posts

        globals().update(defs=dg.Definitions(assets=[scheduled_posts]), scheduled_posts=scheduled_posts)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
