"""What a paid stage expects to spend, said the same way by every stage: in its log before anything is
created or started, and in its metadata beside what it did spend (`cost_usd`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CostEstimate:
    usd: float
    basis: str  # how the figure was reached, e.g. "40 jobs x $0.05" or "95 min x $0.79/h"
    gpu_minutes: float | None = None

    def describe(self) -> str:
        minutes = f", ~ {self.gpu_minutes:.0f} GPU minutes" if self.gpu_minutes is not None else ""
        return f"~ ${self.usd:.2f}{minutes} ({self.basis})"

    def metadata(self) -> dict[str, object]:
        shown: dict[str, object] = {"cost_estimate_usd": round(self.usd, 4), "cost_estimate": self.describe()}
        if self.gpu_minutes is not None:
            shown["gpu_minutes_estimate"] = round(self.gpu_minutes, 1)
        return shown


def gpu_estimate(minutes: float, dollars_per_hour: float, basis: str) -> CostEstimate:
    return CostEstimate(
        usd=minutes * dollars_per_hour / 60,
        basis=f"{basis}; {minutes:.0f} min x ${dollars_per_hour:.2f}/h",
        gpu_minutes=minutes,
    )


def jobs_estimate(jobs: int, price_per_job: float, basis: str) -> CostEstimate:
    return CostEstimate(usd=jobs * price_per_job, basis=f"{basis}; {jobs} jobs x ${price_per_job:.3f}")
