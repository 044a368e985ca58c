"""Fake RunPod GraphQL API: a real HTTP server on 127.0.0.1 whose "pods" run the worker command as a
local process with the env they were given (plus what the image would set), and a timeline of every
pod's create/exit/terminate times for billing."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

API_KEY = "rp-test-key"
# What deploy/worker/Dockerfile sets, with the stand-in trainer in place of kohya.
IMAGE_ENV = {
    "MODELCREW_TRAINER_LAUNCH": f"{sys.executable} -m modelcrew_assets.worker.stand_in_trainer",
    "MODELCREW_PROGRESS_LOG_SECONDS": "1",
    "MODELCREW_WATCH_SECONDS": "0.1",
}
_BASE_ENV = ("PATH", "HOME", "LANG", "VIRTUAL_ENV", "TMPDIR")


@dataclass
class FakePod:
    id: str
    name: str
    gpu_type: str
    env: dict[str, str]
    process: subprocess.Popen
    created: float
    exited: float | None = None
    terminated: float | None = None


@dataclass
class FakeRunPod:
    url: str = ""
    no_capacity: set[str] = field(default_factory=set)
    cost_per_hour: float = 0.69
    pod_env: dict[str, str] = field(default_factory=dict)  # e.g. MODELCREW_STANDIN_DIE_AT
    # RunPod takes the pod back (host failure, reclaimed machine) the first time this says so.
    lose_pod_when: Callable[[], bool] | None = None
    pods: dict[str, FakePod] = field(default_factory=dict)
    deploy_attempts: list[str] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def billable_seconds(self, pod_id: str) -> float:
        pod = self.pods[pod_id]
        return (pod.terminated or time.monotonic()) - pod.created

    def only_pod(self) -> FakePod:
        assert len(self.pods) == 1, f"expected one pod, got {list(self.pods)}"
        return next(iter(self.pods.values()))

    def handle(self, query: str, variables: dict) -> dict:
        if "podFindAndDeployOnDemand" in query:
            return self._deploy(variables["input"])
        if "podTerminate" in query:
            pod = self.pods.get(variables["podId"])
            if pod is not None and pod.terminated is None:
                _kill(pod.process)
                pod.terminated = time.monotonic()
            return {"data": {"podTerminate": None}}
        if "myself" in query:
            return {"data": {"myself": {"pods": [{"id": p.id, "name": p.name} for p in self.pods.values()]}}}
        if "pod(" in query:
            pod = self.pods.get(variables["podId"])
            if pod is None or pod.terminated is not None:
                return {"data": {"pod": None}}
            if self.lose_pod_when is not None and self.lose_pod_when():
                self.lose_pod_when = None
                _kill(pod.process)
                pod.terminated = time.monotonic()
                return {"data": {"pod": None}}
            if pod.process.poll() is not None and pod.exited is None:
                pod.exited = time.monotonic()
            status = "EXITED" if pod.exited else "RUNNING"
            uptime = int(time.monotonic() - pod.created)
            return {"data": {"pod": {"id": pod.id, "desiredStatus": status, "runtime": {"uptimeInSeconds": uptime}}}}
        return {"errors": [{"message": f"fake RunPod does not know this query: {query[:60]}"}]}

    def _deploy(self, spec: dict) -> dict:
        gpu = spec["gpuTypeId"]
        self.deploy_attempts.append(gpu)
        if gpu in self.no_capacity:
            return {
                "errors": [
                    {
                        "message": "There are no longer any instances available with the requested "
                        "specifications. Please refresh and try again."
                    }
                ]
            }
        given = {item["key"]: item["value"] for item in spec["env"]}
        env = {name: os.environ[name] for name in _BASE_ENV if name in os.environ}
        env.update(IMAGE_ENV)
        env.update(self.pod_env)
        env.update(given)
        command = shlex.split(spec["dockerArgs"])
        if command[0] == "python":
            command[0] = sys.executable
        process = subprocess.Popen(command, env=env, start_new_session=True)
        pod_id = uuid.uuid4().hex[:14]
        self.pods[pod_id] = FakePod(pod_id, spec["name"], gpu, given, process, time.monotonic())
        pod = {"id": pod_id, "costPerHr": self.cost_per_hour, "desiredStatus": "RUNNING"}
        return {"data": {"podFindAndDeployOnDemand": pod}}

    def stop_all(self) -> None:
        for pod in self.pods.values():
            _kill(pod.process)


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _handler(fake: FakeRunPod) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            if self.path != "/graphql":
                return self._answer(404, {"errors": [{"message": "not found"}]})
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                return self._answer(401, {"errors": [{"message": "unauthorized"}]})
            with fake.lock:
                fake.requests.append(body)
                answer = fake.handle(body["query"], body.get("variables") or {})
            self._answer(200, answer)

        def _answer(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def fake_runpod(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunPod]:
    fake = FakeRunPod()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/graphql"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("RUNPOD_API_KEY", API_KEY)
    yield fake
    server.shutdown()
    fake.stop_all()
