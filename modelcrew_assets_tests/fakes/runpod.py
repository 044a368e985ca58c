"""Fake RunPod GraphQL API: a real HTTP server on 127.0.0.1 whose "pods" run the worker command as a
local process with the env they were given, plus what the image sets and what RunPod injects into every
pod (RUNPOD_POD_ID and a pod-scoped RUNPOD_API_KEY).

Like RunPod: when a pod's container command exits (any code), the container is started again with the
same command and env, `desiredStatus` stays RUNNING and the pod bills until it is stopped (`podStop`:
EXITED, still listed, disk kept) or terminated (`podTerminate`: gone from `myself { pods }`). Each pod
keeps a timeline (created, every container start/exit, stopped, terminated) so tests can measure what
was billed."""

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

from modelcrew_assets_tests.fakes.loopback import serving_thread

API_KEY = "rp-test-key"
# What deploy/worker/Dockerfile sets, with the stand-in trainer in place of kohya.
IMAGE_ENV = {
    "MODELCREW_TRAINER_LAUNCH": f"{sys.executable} -m modelcrew_assets.worker.stand_in_trainer",
    "MODELCREW_PROGRESS_LOG_SECONDS": "1",
    "MODELCREW_WATCH_SECONDS": "0.1",
}
_BASE_ENV = ("PATH", "HOME", "LANG", "VIRTUAL_ENV", "TMPDIR")
NO_INSTANCES = (
    "There are no longer any instances available with the requested specifications. Please refresh and try again."
)
NO_RESOURCES = "This machine does not have the resources to deploy your pod. Please try a different machine."
RESTART_DELAY_SECONDS = 0.3
STOP_GRACE_SECONDS = 5  # docker stop: SIGTERM, then SIGKILL


@dataclass
class FakePod:
    id: str
    name: str
    gpu_type: str
    env: dict[str, str]  # what the deploy request asked for
    command: list[str]
    container_env: dict[str, str]  # what the container sees
    api_key: str  # the pod-scoped key RunPod injects as RUNPOD_API_KEY
    created: float
    process: subprocess.Popen | None = None
    timeline: list[tuple[float, str]] = field(default_factory=list)
    stopped: float | None = None
    terminated: float | None = None
    exited_at: float | None = None  # the current container's exit, awaiting restart

    @property
    def container_starts(self) -> int:
        return sum(1 for _, event in self.timeline if event == "container started")

    @property
    def status(self) -> str:
        return "TERMINATED" if self.terminated else "EXITED" if self.stopped else "RUNNING"


@dataclass
class FakeRunPod:
    url: str = ""
    no_capacity: set[str] = field(default_factory=set)
    no_resources: set[str] = field(default_factory=set)  # "This machine does not have the resources..."
    cost_per_hour: float = 0.69
    pod_env: dict[str, str] = field(default_factory=dict)  # e.g. MODELCREW_STANDIN_DIE_AT
    # The first `kill_containers` containers started (across all pods) get `container_fault` this many
    # seconds after they start: SIGKILL (an OOM kill, a crash before Pipes is closed) or SIGSTOP (a hang).
    fault_after: float | None = None
    fault_containers: int = 1
    container_fault: signal.Signals = signal.SIGKILL
    containers_started: int = 0
    # RunPod takes the pod back (host failure, reclaimed machine) the first time this says so.
    lose_pod_when: Callable[[], bool] | None = None
    # While set and not yet released, a deploy's answer is held back after its pod exists (listed, billing):
    # the moment between RunPod making a pod and the orchestrator hearing of it.
    hold_deploy_answer: threading.Event | None = None
    refuse_terminate: set[str] = field(default_factory=set)  # pod ids whose podTerminate RunPod fails
    pods: dict[str, FakePod] = field(default_factory=dict)
    deploy_attempts: list[str] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    closing: threading.Event = field(default_factory=threading.Event)

    def billable_seconds(self, pod_id: str) -> float:
        """GPU time: from create until the pod is stopped or terminated (a stopped pod still bills disk)."""
        pod = self.pods[pod_id]
        ends = [t for t in (pod.stopped, pod.terminated) if t is not None]
        return (min(ends) if ends else time.monotonic()) - pod.created

    def only_pod(self) -> FakePod:
        assert len(self.pods) == 1, f"expected one pod, got {list(self.pods)}"
        return next(iter(self.pods.values()))

    def listed_pods(self) -> list[dict]:
        """What `myself { pods { ... } }` answers: every pod not terminated, stopped ones included."""
        return [
            {"id": p.id, "name": p.name, "desiredStatus": p.status, "costPerHr": self.cost_per_hour}
            for p in self.pods.values()
            if p.terminated is None
        ]

    def add_foreign_pod(self, name: str) -> FakePod:
        """A pod someone made by hand in the same account (a notebook, another tool)."""
        return self._create(name, "NVIDIA GeForce RTX 4090", {}, [sys.executable, "-c", "import time; time.sleep(600)"])

    def add_idle_pod(self, name: str) -> FakePod:
        """A running pod whose container only waits, e.g. one left behind by a run worker that died."""
        with self.lock:
            return self.add_foreign_pod(name)

    def handle(self, query: str, variables: dict, key: str) -> dict:
        pod_scoped = key != API_KEY
        owner = next((p for p in self.pods.values() if p.api_key == key), None)
        if pod_scoped and (owner is None or variables.get("podId") != owner.id):
            return {"errors": [{"message": "You are not authorized to perform this action on this pod."}]}
        if "podFindAndDeployOnDemand" in query:
            return self._deploy(variables["input"])
        if "podTerminate" in query and variables.get("podId") in self.refuse_terminate:
            return {"errors": [{"message": "Something went wrong. Please try again later or contact support."}]}
        if "podTerminate" in query:
            pod = self.pods.get(variables["podId"])
            if pod is not None and pod.terminated is None:
                _kill(pod.process)
                pod.terminated = time.monotonic()
                pod.timeline.append((pod.terminated, "terminated"))
            return {"data": {"podTerminate": None}}
        if "podStop" in query:
            pod = self.pods.get(variables["podId"])
            if pod is None or pod.terminated is not None:
                return {"errors": [{"message": "pod not found"}]}
            if pod.stopped is None:
                pod.stopped = time.monotonic()
                pod.timeline.append((pod.stopped, "stopped"))
                _signal(pod.process, signal.SIGTERM)
            return {"data": {"podStop": {"id": pod.id, "desiredStatus": "EXITED"}}}
        if "myself" in query:
            return {"data": {"myself": {"pods": self.listed_pods()}}}
        if "pod(" in query:
            pod = self.pods.get(variables["podId"])
            if pod is None or pod.terminated is not None:
                return {"data": {"pod": None}}
            if self.lose_pod_when is not None and self.lose_pod_when():
                self.lose_pod_when = None
                _kill(pod.process)
                pod.terminated = time.monotonic()
                pod.timeline.append((pod.terminated, "terminated (host lost)"))
                return {"data": {"pod": None}}
            uptime = int(time.monotonic() - pod.created)
            answer = {"id": pod.id, "desiredStatus": pod.status, "runtime": {"uptimeInSeconds": uptime}}
            return {"data": {"pod": answer}}
        return {"errors": [{"message": f"fake RunPod does not know this query: {query[:60]}"}]}

    def _deploy(self, spec: dict) -> dict:
        gpu = spec["gpuTypeId"]
        self.deploy_attempts.append(gpu)
        if gpu in self.no_capacity:
            return {"errors": [{"message": NO_INSTANCES}]}
        if gpu in self.no_resources:
            return {"errors": [{"message": NO_RESOURCES}]}
        given = {item["key"]: item["value"] for item in spec["env"]}
        command = shlex.split(spec["dockerArgs"])
        if command[0] == "python":
            command[0] = sys.executable
        pod = self._create(spec["name"], gpu, given, command)
        answer = {"id": pod.id, "costPerHr": self.cost_per_hour, "desiredStatus": "RUNNING"}
        return {"data": {"podFindAndDeployOnDemand": answer}}

    def _create(self, name: str, gpu: str, given: dict[str, str], command: list[str]) -> FakePod:
        pod_id = uuid.uuid4().hex[:14]
        pod_key = f"rp-pod-{uuid.uuid4().hex}"
        env = {n: os.environ[n] for n in _BASE_ENV if n in os.environ}
        env.update(IMAGE_ENV)
        env.update(self.pod_env)
        env.update(given)
        env.update(RUNPOD_POD_ID=pod_id, RUNPOD_API_KEY=pod_key, RUNPOD_GPU_COUNT="1")
        pod = FakePod(pod_id, name, gpu, given, command, env, pod_key, time.monotonic())
        pod.timeline.append((pod.created, "created"))
        self.pods[pod_id] = pod
        self._start_container(pod)
        return pod

    def _start_container(self, pod: FakePod) -> None:
        pod.process = subprocess.Popen(pod.command, env=pod.container_env, start_new_session=True)
        pod.exited_at = None
        pod.timeline.append((time.monotonic(), "container started"))
        self.containers_started += 1
        if self.fault_after is not None and self.containers_started <= self.fault_containers:
            fault = threading.Timer(self.fault_after, self._fault, (pod, pod.process))
            fault.daemon = True
            fault.start()

    def _fault(self, pod: FakePod, process: subprocess.Popen) -> None:
        with self.lock:
            if process.poll() is None and pod.terminated is None:
                pod.timeline.append((time.monotonic(), f"container got {self.container_fault.name}"))
                _signal(process, self.container_fault)

    def supervise(self) -> None:
        """RunPod's restart policy: a running pod whose container exited gets it started again."""
        while not self.closing.wait(0.1):
            with self.lock:
                for pod in self.pods.values():
                    self._supervise(pod)

    def _supervise(self, pod: FakePod) -> None:
        if pod.process is None or pod.terminated is not None:
            return
        code = pod.process.poll()
        now = time.monotonic()
        if pod.stopped is not None:
            if code is None and now - pod.stopped > STOP_GRACE_SECONDS:
                _signal(pod.process, signal.SIGKILL)
            if code is not None and pod.exited_at is None:
                pod.exited_at = now
                pod.timeline.append((now, f"container exited ({code})"))
            return
        if code is None:
            return
        if pod.exited_at is None:
            pod.exited_at = now
            pod.timeline.append((now, f"container exited ({code})"))
        elif now - pod.exited_at >= RESTART_DELAY_SECONDS:
            self._start_container(pod)

    def stop_all(self) -> None:
        self.closing.set()
        with self.lock:
            for pod in self.pods.values():
                _kill(pod.process)


def _signal(process: subprocess.Popen | None, sig: signal.Signals) -> None:
    if process is not None and process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass


def _kill(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    _signal(process, signal.SIGKILL)
    process.wait()


def _handler(fake: FakeRunPod) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            if self.path != "/graphql":
                return self._answer(404, {"errors": [{"message": "not found"}]})
            auth = self.headers.get("Authorization") or ""
            key = auth.removeprefix("Bearer ")
            with fake.lock:
                known = key == API_KEY or any(p.api_key == key for p in fake.pods.values())
                if not known:
                    return self._answer(401, {"errors": [{"message": "unauthorized"}]})
                fake.requests.append(body)
                answer = fake.handle(body["query"], body.get("variables") or {}, key)
            if fake.hold_deploy_answer is not None and "podFindAndDeployOnDemand" in body["query"]:
                fake.hold_deploy_answer.wait(timeout=60)
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
    threads = [
        serving_thread(server),
        threading.Thread(target=fake.supervise, daemon=True),
    ]
    for thread in threads:
        thread.start()
    monkeypatch.setenv("RUNPOD_API_KEY", API_KEY)
    yield fake
    server.shutdown()
    fake.stop_all()
