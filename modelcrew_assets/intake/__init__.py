"""Intake: the user's uploads, the sensor that notices them, and the job it starts."""
