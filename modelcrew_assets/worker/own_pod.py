"""What a worker on a RunPod pod does about its own pod (stdlib only).

RunPod starts a pod's container again whenever its command exits and bills until the pod is stopped or
terminated. So the worker stops its own pod once Pipes is closed (RunPod's documented way is
`runpodctl stop pod $RUNPOD_POD_ID`; this is the same `podStop` call over GraphQL, with the pod-scoped
RUNPOD_API_KEY RunPod injects into every pod), and a restarted container, which would run the paid
work again and overwrite its predecessor's Pipes messages, stops the pod instead. The orchestrator still
terminates the pod in every case: a stopped pod keeps billing for its disk.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request

from dagster_pipes import PipesEnvVarParamsLoader

POD_ID_ENV = "RUNPOD_POD_ID"
POD_KEY_ENV = "RUNPOD_API_KEY"
GRAPHQL_URL_ENV = "MODELCREW_RUNPOD_GRAPHQL_URL"
DEFAULT_GRAPHQL_URL = "https://api.runpod.io/graphql"
STOP = "mutation Stop($podId: String!) { podStop(input: {podId: $podId}) { id desiredStatus } }"

log = logging.getLogger("modelcrew.worker")


def on_runpod() -> bool:
    return bool(os.environ.get(POD_ID_ENV))


def container_was_restarted(s3_client) -> bool:
    """True when an earlier container of this pod already wrote Pipes messages: the S3 message writer
    numbers its chunks from 1, so a predecessor's `1.json` under this launch's key prefix gives it away."""
    params = PipesEnvVarParamsLoader().load_messages_params()
    prefix = params.get("key_prefix")
    key = f"{prefix}/1.json" if prefix else "1.json"
    try:
        s3_client.head_object(Bucket=params["bucket"], Key=key)
    except s3_client.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def stop_own_pod(attempts: int = 3) -> bool:
    """podStop for this pod; False (and a warning on stderr, which RunPod keeps) when it did not go through."""
    pod_id, key = os.environ.get(POD_ID_ENV), os.environ.get(POD_KEY_ENV)
    if not (pod_id and key):
        return False
    url = os.environ.get(GRAPHQL_URL_ENV) or DEFAULT_GRAPHQL_URL
    body = json.dumps({"query": STOP, "variables": {"podId": pod_id}}).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=15) as response:
                errors = json.loads(response.read()).get("errors")
            if not errors:
                return True
            log.warning("podStop for pod %s was refused: %s", pod_id, "; ".join(str(e.get("message")) for e in errors))
        except (OSError, ValueError) as error:
            log.warning("podStop for pod %s failed (attempt %d of %d): %s", pod_id, attempt + 1, attempts, error)
        time.sleep(2**attempt)
    return False
