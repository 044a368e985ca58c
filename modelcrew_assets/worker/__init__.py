"""The code that runs on the GPU box, started as `python -m modelcrew_assets.worker <command> ...`.

Narrow dependencies on purpose: the standard library, boto3, pydantic and dagster-pipes (kohya and torch come
from the image). Nothing here imports dagster; outside this package it uses only the Dagster-free storage
modules (object_store, resources/storage_backends, storage_keys), which test_worker checks.
"""
