"""Cost control, pure: what the planned jobs will cost (seconds x price) and whether the model's daily and
monthly video budget ([reels] in model.toml, UTC days and months) leaves room for it, counted from the
ledger before any job is created. Ambiguous creates count as billed; refunded failures do not."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from modelcrew_assets.generated_reels.ledger import ReelRecord
from modelcrew_assets.manifest import ReelsSection


class BudgetExceededError(RuntimeError):
    """The planned jobs would take the model's video spend past a budget; the message gives the figures."""


@dataclass(frozen=True)
class Estimate:
    jobs: int
    seconds: int
    price_per_second_usd: float
    spent_today_usd: float
    spent_this_month_usd: float

    @property
    def cost_usd(self) -> float:
        return round(self.seconds * self.price_per_second_usd, 4)


def estimate(
    new_jobs: int, duration: int, price_per_second_usd: float, records: Iterable[ReelRecord], now: datetime
) -> Estimate:
    today, month = now.date(), (now.year, now.month)
    charged = [(job.created_at, job.charged_usd) for record in records for job in record.jobs]
    return Estimate(
        jobs=new_jobs,
        seconds=new_jobs * duration,
        price_per_second_usd=price_per_second_usd,
        spent_today_usd=round(sum(cost for at, cost in charged if at.date() == today), 4),
        spent_this_month_usd=round(sum(cost for at, cost in charged if (at.year, at.month) == month), 4),
    )


def check_budget(plan: Estimate, config: ReelsSection, source: str) -> None:
    """Raise BudgetExceededError naming the budget, the estimate and what was spent when a job would not fit."""
    for period, spent, budget, field in (
        ("today (UTC)", plan.spent_today_usd, config.daily_budget_usd, "daily_budget_usd"),
        ("this month (UTC)", plan.spent_this_month_usd, config.monthly_budget_usd, "monthly_budget_usd"),
    ):
        if plan.cost_usd > 0 and spent + plan.cost_usd > budget + 1e-9:
            raise BudgetExceededError(
                f"generated_reels: {plan.jobs} new video job(s) x {plan.seconds // max(plan.jobs, 1)} s x "
                f"USD {plan.price_per_second_usd:.3f}/s = USD {plan.cost_usd:.2f}, with USD {spent:.2f} already "
                f"spent {period}, would exceed {source} [reels].{field} = USD {budget:.2f}; nothing was created. "
                "Lower [reels].top_n or duration, raise the budget, or wait for the next period"
            )
