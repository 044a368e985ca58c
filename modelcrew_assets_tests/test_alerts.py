import dagster as dg

from modelcrew_assets.alerts.sensors import run_failure_alert
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.alert_webhook import AlertWebhookResource


@dg.asset(partitions_def=models_partitions)
def exploding_stage() -> None:
    raise RuntimeError("captions: 3 images have no face (a.jpg, b.jpg, c.jpg)\nsecond line of detail")


def alert_on_a_failed_run(instance, resources):
    """run_failure_alert evaluated for a run that just failed; what it returned."""
    instance.add_dynamic_partitions("models", ["blondie"])
    result = dg.materialize([exploding_stage], partition_key="blondie", instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(event for event in result.all_events if event.event_type == dg.DagsterEventType.RUN_FAILURE)
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources=resources,
    ) as context:
        return run_failure_alert(context.for_run_failure())


def test_failed_run_posts_model_step_error_and_link(instance, webhook_receiver):
    webhook = AlertWebhookResource(webhook_url=webhook_receiver.url, ui_base_url="http://dagster.local")
    alert_on_a_failed_run(instance, {"alert_webhook": webhook})
    [message] = webhook_receiver.messages
    text = message["text"]
    assert "model `blondie`" in text and "`exploding_stage`" in text
    assert "captions: 3 images have no face (a.jpg, b.jpg, c.jpg)" in text and "second line" not in text
    [failed] = instance.get_runs()
    assert f"http://dagster.local/runs/{failed.run_id}" in text


def test_webhook_5xx_is_retried_and_delivered_once(instance, webhook_receiver):
    webhook_receiver.fail_next = 2
    webhook = AlertWebhookResource(webhook_url=webhook_receiver.url)
    alert_on_a_failed_run(instance, {"alert_webhook": webhook})
    assert len(webhook_receiver.paths) == 3 and len(webhook_receiver.messages) == 1
    assert webhook_receiver.paths[-1] == "/services/T000/B000/secret-token"


def test_no_webhook_configured_skips_with_a_reason(instance):
    result = alert_on_a_failed_run(instance, {"alert_webhook": AlertWebhookResource()})
    assert "MODELCREW_ALERT_WEBHOOK_URL" in result.skip_message


def test_webhook_url_never_appears_in_errors(instance, webhook_receiver, capfd):
    webhook_receiver.fail_next = 10
    webhook = AlertWebhookResource(webhook_url=webhook_receiver.url, max_attempts=2)
    try:
        alert_on_a_failed_run(instance, {"alert_webhook": webhook})
    except Exception as error:  # noqa: BLE001 - the assertion is about the message
        assert "secret-token" not in str(error) and "alert webhook POST message" in str(error)
    else:
        raise AssertionError("a webhook that keeps failing must raise")
    assert "secret-token" not in capfd.readouterr().err
