"""platform_exports: face-aware crops per platform, watermark, AI-content labels and a manifest.csv per
platform for schedulers. The export core (platforms, crop, source_decode, watermark, labels, provenance,
render, pool) is pure and imports no Dagster; stage.py ties it to storage; assets.py and checks.py to Dagster.

`defs` is loaded on first access (PEP 562) so the render worker processes, which import the core through
this package, start in a fraction of a second instead of importing Dagster first.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("defs", "platform_exports"):
        import dagster as dg

        from modelcrew_assets.platform_exports.assets import platform_exports

        globals().update(defs=dg.Definitions(assets=[platform_exports]), platform_exports=platform_exports)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
