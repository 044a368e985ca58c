"""Alerts: a run-failure sensor that tells the studio's chat which model and step failed, and why."""

import dagster as dg

from modelcrew_assets.alerts.sensors import run_failure_alert

defs = dg.Definitions(sensors=[run_failure_alert])
