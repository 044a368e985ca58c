"""generated_reels: short 9:16 videos from each batch's best stills, through an image-to-video API.

Pure parts: stills (which stills, motion, seed), budget, ledger, ffmpeg/finishing/labels (the reel itself);
flow.py drives a run through the provider interface in providers.py; assets.py and checks.py tie it to
Dagster. `defs` loads lazily, as the other stages' packages do.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("defs", "generated_reels"):
        import dagster as dg

        from modelcrew_assets.generated_reels.assets import generated_reels

        globals().update(defs=dg.Definitions(assets=[generated_reels]), generated_reels=generated_reels)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
