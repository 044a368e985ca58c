"""Alerts: a run-failure sensor that tells the studio's chat which model and step failed, and why."""
