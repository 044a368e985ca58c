"""post_metrics and prompt_pack_performance: engagement flows back and steers the next batch.

Pure parts: estimate (Beta-binomial, A/B verdict), series (the CSV time series), index, performance
(post -> prompt pack / reel motion); provider.py is the metrics service interface, simulated.py its
labelled stand-in; assets.py, schedule.py and report.py tie it to Dagster.
"""
