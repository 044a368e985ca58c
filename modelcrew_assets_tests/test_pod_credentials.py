"""RunPod pods get a short-lived STS session scoped to their run's prefixes, never the orchestrator's keys.

The run tests use moto with its IAM checks on plus the session-policy rule moto leaves out
(fakes/s3.py: `iam_enforcing_s3`), so a request the pod's session may not make is refused like AWS would."""

import datetime
import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.sts.models import sts_backends

from modelcrew_assets.resources.gpu import RunPodPodsResource
from modelcrew_assets.resources.gpu.pod_credentials import (
    POD_ROLE_ARN_ENV,
    SESSION_POLICY_MAX_CHARS,
    STS_MIN_SECONDS,
    PodCredentialError,
    credential_seconds,
    pipes_prefix,
    run_scope,
)
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.settings import MissingCredentialError
from modelcrew_assets_tests.fakes.aws_env import TEST_REGION
from modelcrew_assets_tests.fakes.runpod import FakeRunPod
from modelcrew_assets_tests.fakes.s3 import IamAccount, make_bucket
from modelcrew_assets_tests.test_gpu_executor import probe
from modelcrew_assets_tests.test_lora_checkpoints import (  # noqa: F401 (quick_pipes_close is autouse)
    MODEL,
    STEPS,
    failure_message,
    materialize,
    quick_pipes_close,
    runpod,
    seed_dataset,
)

RUN_OUTPUTS = f"models/{MODEL}/lora_checkpoints/"


@pytest.fixture
def studio(iam_enforcing_s3: IamAccount, monkeypatch: pytest.MonkeyPatch) -> StorageResource:
    """The orchestrator's side: its own IAM user key, the pod role, a bucket only it can fully use."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", iam_enforcing_s3.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", iam_enforcing_s3.secret_access_key)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS"):
        monkeypatch.setenv(name, iam_enforcing_s3.endpoint)
    monkeypatch.setenv(POD_ROLE_ARN_ENV, iam_enforcing_s3.pod_role_arn)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches the credentials it first resolved
    return StorageResource(url=f"s3://{make_bucket(iam_enforcing_s3.endpoint)}/studio", region=TEST_REGION)


def pod_s3(pod_env: dict[str, str], endpoint: str):
    return boto3.client(
        "s3", region_name=TEST_REGION, endpoint_url=endpoint, aws_access_key_id=pod_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=pod_env["AWS_SECRET_ACCESS_KEY"], aws_session_token=pod_env["AWS_SESSION_TOKEN"],
    )  # fmt: skip


def refused(call) -> bool:
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"] == "AccessDenied"
    return False


def test_pod_trains_with_a_scoped_session_and_never_sees_the_orchestrators_key(
    studio, iam_enforcing_s3, fake_runpod: FakeRunPod, instance
):
    seed_dataset(studio)
    result = materialize(instance, studio, runpod(fake_runpod))
    assert result.success, failure_message(result)
    stored = sorted(o.key for o in studio.list(RUN_OUTPUTS) if o.key.endswith(".safetensors"))
    assert len(stored) == len(STEPS)

    env = fake_runpod.only_pod().env
    assert env["AWS_ACCESS_KEY_ID"].startswith("ASIA") and env["AWS_SESSION_TOKEN"]
    assert iam_enforcing_s3.access_key_id not in json.dumps(env)
    assert iam_enforcing_s3.secret_access_key not in json.dumps(env)
    # Pipes context and messages stayed under the storage prefix, in this run's folder.
    everything = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=studio.backend.bucket)["Contents"]]
    pipes = [key for key in everything if "/1.json" in key]
    assert pipes and all(key.startswith(pipes_prefix("studio/", result.run_id)) for key in pipes)
    assert all(key.startswith("studio/") for key in everything)


def test_the_pods_session_cannot_write_or_read_outside_its_run(studio, iam_enforcing_s3, fake_runpod, instance):
    seed_dataset(studio)
    studio.put_bytes("uploads/other/face/face.jpg", b"someone else's face")
    assert materialize(instance, studio, runpod(fake_runpod)).success
    pod = fake_runpod.only_pod()
    s3, bucket = pod_s3(pod.env, iam_enforcing_s3.endpoint), studio.backend.bucket
    run_prefix = next(o.key for o in studio.list(RUN_OUTPUTS) if o.key.endswith(".safetensors")).rsplit("/", 1)[0]

    assert not refused(lambda: s3.put_object(Bucket=bucket, Key=f"studio/{run_prefix}/extra.txt", Body=b"ok"))
    for outside in (f"studio/{RUN_OUTPUTS}another-run/x.safetensors", f"studio/uploads/{MODEL}/face/x.jpg",
                    "studio/pipes/another-run/1.json", "x.json", "studio/models/other/lora_checkpoints/x"):  # fmt: skip
        assert refused(lambda key=outside: s3.put_object(Bucket=bucket, Key=key, Body=b"no")), outside
    assert refused(lambda: s3.get_object(Bucket=bucket, Key="studio/uploads/other/face/face.jpg"))

    # The control: a session of the same role without the session policy may write there, so the refusals
    # above come from the pod's session policy, not from the role or the fake.
    sts = boto3.client("sts", region_name=TEST_REGION)
    bare = sts.assume_role(RoleArn=iam_enforcing_s3.pod_role_arn, RoleSessionName="control")["Credentials"]
    unscoped = pod_s3(
        {"AWS_ACCESS_KEY_ID": bare["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": bare["SecretAccessKey"],
         "AWS_SESSION_TOKEN": bare["SessionToken"]}, iam_enforcing_s3.endpoint,
    )  # fmt: skip
    assert not refused(lambda: unscoped.put_object(Bucket=bucket, Key="x.json", Body=b"role allows it"))


def test_the_session_lasts_the_runs_budget_not_longer(s3_storage, fake_runpod, instance):
    seed_dataset(s3_storage)
    result = materialize(instance, s3_storage, runpod(fake_runpod, max_runtime_minutes=30))
    assert result.success, failure_message(result)
    session = next(
        role for accounts in sts_backends.values() for backend in accounts.values() for role in backend.assumed_roles
        if role.access_key_id == fake_runpod.only_pod().env["AWS_ACCESS_KEY_ID"]
    )  # fmt: skip
    lasts = (session.expiration - datetime.datetime.now(datetime.UTC).replace(tzinfo=None)).total_seconds()
    assert 30 * 60 < lasts <= credential_seconds(30 * 60 + 120)
    assert session.session_name == f"modelcrew-{result.run_id}"


def test_live_runpod_without_the_pod_role_fails_before_any_pod(instance, s3_storage, fake_runpod, monkeypatch):
    monkeypatch.delenv(POD_ROLE_ARN_ENV)
    error = probe(instance, s3_storage, RunPodPodsResource(api_key="rp-test-key", graphql_url=fake_runpod.url))
    assert isinstance(error, MissingCredentialError) and POD_ROLE_ARN_ENV in str(error)
    assert fake_runpod.requests == []


def test_a_budget_longer_than_sts_sessions_fails_before_any_pod(instance, s3_storage, fake_runpod):
    gpu = RunPodPodsResource(api_key="rp-test-key", graphql_url=fake_runpod.url, max_runtime_minutes=13 * 60)
    error = probe(instance, s3_storage, gpu)
    assert isinstance(error, PodCredentialError) and "max_runtime_minutes" in str(error)
    assert fake_runpod.requests == []


def test_worker_env_cannot_smuggle_long_lived_keys_to_the_pod(instance, s3_storage, fake_runpod):
    gpu = RunPodPodsResource(
        api_key="rp-test-key", graphql_url=fake_runpod.url, worker_env={"AWS_SECRET_ACCESS_KEY": "x"}
    )
    assert "worker_env must not set" in str(probe(instance, s3_storage, gpu)) and fake_runpod.requests == []


def test_scope_of_each_gpu_command():
    pipes = pipes_prefix("studio/", "run-1")
    train = run_scope("b", "studio/", MODEL, {"output_prefix": f"{RUN_OUTPUTS}r1/"}, pipes)
    assert train.writes == (f"studio/{RUN_OUTPUTS}r1/", pipes)
    assert f"studio/uploads/{MODEL}/face/" in train.reads and f"studio/models/{MODEL}/kohya_dataset/" in train.reads
    jobs = [{"output_key": f"models/{MODEL}/checkpoint_evaluations/e1/{n}.png"} for n in ("a", "b")]
    assert (
        run_scope("b", "studio/", MODEL, {"jobs": jobs}, pipes).writes[0]
        == f"studio/models/{MODEL}/checkpoint_evaluations/e1/"
    )
    with pytest.raises(PodCredentialError, match="outside models/blondie/"):
        run_scope("b", "studio/", MODEL, {"output_prefix": "models/other/x/"}, pipes)


def test_session_policy_fits_sts_limit_and_durations_stay_within_sts_bounds():
    long_prefix = "p" * 100 + "/"
    scope = run_scope(
        "b" * 63,
        long_prefix,
        "m" * 40,
        {"output_prefix": "models/" + "m" * 40 + "/" + "x" * 60 + "/"},
        pipes_prefix(long_prefix, "0" * 36),
    )
    assert len(scope.session_policy()) <= SESSION_POLICY_MAX_CHARS
    assert credential_seconds(60) == STS_MIN_SECONDS
    with pytest.raises(PodCredentialError):
        credential_seconds(12 * 3600)


def test_definitions_bind_the_pod_role_from_the_environment(monkeypatch):
    monkeypatch.setenv(POD_ROLE_ARN_ENV, "arn:aws:iam::123456789012:role/modelcrew-pod")
    assert RunPodPodsResource().pod_role_arn == "arn:aws:iam::123456789012:role/modelcrew-pod"
