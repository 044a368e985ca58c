"""post_metrics and prompt_pack_performance: engagement flows back and steers the next batch.

Pure parts: estimate (Beta-binomial, A/B verdict), series (the CSV time series), index, performance
(post -> prompt pack / reel motion); provider.py is the metrics service interface, simulated.py its
labelled stand-in; assets.py, schedule.py and report.py tie it to Dagster. `defs` loads lazily.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "defs":
        import dagster as dg

        from modelcrew_assets.post_metrics.assets import post_metrics, prompt_pack_performance
        from modelcrew_assets.post_metrics.schedule import daily_post_metrics, post_metrics_job

        globals()["defs"] = dg.Definitions(
            assets=[post_metrics, prompt_pack_performance], jobs=[post_metrics_job], schedules=[daily_post_metrics]
        )
        return globals()["defs"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
