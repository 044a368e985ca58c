"""The GPU pod sweeper: a sensor that terminates RunPod pods whose Dagster run is over or gone."""
