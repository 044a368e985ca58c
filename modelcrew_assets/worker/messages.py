"""The custom Pipes messages a worker sends back; both sides import these names (no dagster here)."""

from __future__ import annotations

# {"type": "checkpoint", "step", "key", "sha256", "size", "metadata": {ss_*...}}
CHECKPOINT = "checkpoint"
# {"type": "sample", "step", "key"}
SAMPLE = "sample"
# {"type": "result", "ok", "error", "log_tail": [...], "loss": [[step, loss], ...], "trainer_seconds",
#  "command": [...], "resumed_from_step", "finished_before_start", "kohya_layout", "attempt",
#  "resumed_checkpoints": [[step, key], ...]}
RESULT = "result"

LOG_TAIL_LINES = 50
