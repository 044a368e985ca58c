"""The code that runs on the GPU box, started as `python -m modelcrew_assets.worker <command> ...`.

Narrow dependencies on purpose: the standard library, boto3 and dagster-pipes only (kohya and torch come
from the image). Nothing here imports dagster or anything outside this package.
"""
