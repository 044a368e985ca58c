"""The outside world: one module per service modelcrew talks to."""
