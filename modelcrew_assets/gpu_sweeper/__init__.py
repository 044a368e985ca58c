"""The GPU pod sweeper: a sensor that terminates RunPod pods whose Dagster run is over or gone."""

import dagster as dg

from modelcrew_assets.gpu_sweeper.sensors import gpu_pod_sweeper

defs = dg.Definitions(sensors=[gpu_pod_sweeper])
