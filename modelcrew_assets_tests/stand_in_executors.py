"""Executors the tests build that no deployment binds: RunPod pods (the fake RunPod) whose worker runs the
stand-in software, so pod handling is tested with renders that are free and fast."""

from modelcrew_assets.resources.gpu import RunPodPodsResource, StandInSoftware


class StandInRunPodPodsResource(StandInSoftware, RunPodPodsResource):
    """RunPod pods, the stand-in generator and trainer on them; what they make is labelled dry_run."""
