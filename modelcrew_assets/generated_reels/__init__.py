"""generated_reels: short 9:16 videos from each batch's best stills, through an image-to-video API.

Pure parts: stills (which stills, motion, seed), budget, ledger, ffmpeg/finishing/labels (the reel itself);
flow.py drives a run through the provider interface in providers.py; assets.py and checks.py tie it to
Dagster.
"""
