"""platform_exports: face-aware crops per platform, watermark, AI-content labels and a manifest.csv per
platform for schedulers. The export core (platforms, crop, source_decode, watermark, labels, provenance,
render, pool) is pure and imports no Dagster, so the render worker processes start in a fraction of a
second; stage.py ties it to storage; assets.py and checks.py to Dagster.
"""
