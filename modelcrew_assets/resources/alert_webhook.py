"""AlertWebhookResource: posts Slack-compatible JSON ({"text": ...}) to an incoming-webhook URL.

The URL itself is a credential (Slack puts its token in the path), so it comes only from the environment
and is never logged: failures name the service, not the address.
"""

from __future__ import annotations

import asyncio

import dagster as dg
from pydantic import Field

from modelcrew_assets.resources.http_api import JsonApiClient, RetryPolicy


class AlertWebhookResource(dg.ConfigurableResource):
    """Where failure alerts go; alerts are skipped (and the sensor says so) when no URL is set."""

    webhook_url: str | None = Field(default=None, description="MODELCREW_ALERT_WEBHOOK_URL")
    ui_base_url: str = Field(default="http://127.0.0.1:3000", description="Dagster UI address used in links")
    timeout_s: float = 10.0
    max_attempts: int = 4

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url)

    def run_link(self, run_id: str) -> str:
        return f"{self.ui_base_url.rstrip('/')}/runs/{run_id}"

    def post(self, text: str) -> None:
        """Send one message; retried on 429/5xx and connection errors (a repeated alert beats a lost one)."""
        asyncio.run(self._post(text))

    async def _post(self, text: str) -> None:
        assert self.webhook_url, "post() is only called when a webhook URL is set"
        async with JsonApiClient(
            "alert webhook",
            "",
            {},
            max_concurrency=1,
            read_timeout_s=self.timeout_s,
            policy=RetryPolicy(max_attempts=self.max_attempts, base_delay_s=0.5, max_delay_s=5.0),
        ) as client:
            await client.call(
                "POST", self.webhook_url, json={"text": text}, idempotent=True, expect_json=False, label="message"
            )
