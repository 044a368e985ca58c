"""Post every failed run to the alert webhook: model, failed step, first line of the error, and a link."""

import dagster as dg
from dagster_shared.error import SerializableErrorInfo

from modelcrew_assets.resources.alert_webhook import AlertWebhookResource

_MAX_ERROR_CHARS = 300


def _root_cause(error: SerializableErrorInfo) -> str:
    """Dagster wraps a step's exception; the user's own message is at the end of the cause chain."""
    while error.cause is not None:
        error = error.cause
    return error.message.removeprefix(f"{error.cls_name}: ")


def failure_message(context: dg.RunFailureSensorContext, link: str) -> str:
    run = context.dagster_run
    model = run.tags.get("dagster/partition") or run.tags.get("modelcrew/model")
    steps = [event.step_key for event in context.get_step_failure_events() if event.step_key]
    error = context.failure_event.message or "no error message"
    first_step_error = next(
        (
            _root_cause(e.step_failure_data.error)
            for e in context.get_step_failure_events()
            if e.step_failure_data.error
        ),
        None,
    )
    reason = (first_step_error or error).strip().splitlines()[0][:_MAX_ERROR_CHARS]
    parts = [f":red_circle: modelcrew run failed: *{run.job_name}*"]
    if model:
        parts.append(f"model `{model}`")
    if steps:
        parts.append(f"step {', '.join(f'`{step}`' for step in steps)}")
    return " · ".join(parts) + f"\n> {reason}\n<{link}|Open the run in Dagster>"


@dg.run_failure_sensor(
    name="run_failure_alert",
    description="Posts each failed run (model, step, error, link) to MODELCREW_ALERT_WEBHOOK_URL.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
)
def run_failure_alert(context: dg.RunFailureSensorContext, alert_webhook: AlertWebhookResource) -> dg.SkipReason | None:
    if not alert_webhook.enabled:
        return dg.SkipReason("no alert webhook configured (set MODELCREW_ALERT_WEBHOOK_URL)")
    alert_webhook.post(failure_message(context, alert_webhook.run_link(context.dagster_run.run_id)))
    return None
