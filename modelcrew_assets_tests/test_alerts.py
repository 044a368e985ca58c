import dagster as dg

from modelcrew_assets.alerts.sensors import run_failure_alert
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.alert_webhook import AlertWebhookResource


@dg.asset(partitions_def=models_partitions)
def exploding_stage() -> None:
    raise RuntimeError("captions: 3 images have no face (a.jpg, b.jpg, c.jpg)\nsecond line of detail")


def failed_run_context(instance, resources):
    instance.add_dynamic_partitions("models", ["blondie"])
    result = dg.materialize([exploding_stage], partition_key="blondie", instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(event for event in result.all_events if event.event_type == dg.DagsterEventType.RUN_FAILURE)
    return dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources=resources,
    ).for_run_failure()


def test_failed_run_posts_model_step_error_and_link(instance, webhook_receiver):
    webhook = AlertWebhookResource(webhook_url=webhook_receiver.url, ui_base_url="http://dagster.local")
    context = failed_run_context(instance, {"alert_webhook": webhook})
    run_failure_alert(context)
    [message] = webhook_receiver.messages
    text = message["text"]
    assert "model `blondie`" in text and "`exploding_stage`" in text
    assert "captions: 3 images have no face (a.jpg, b.jpg, c.jpg)" in text and "second line" not in text
    assert f"http://dagster.local/runs/{context.dagster_run.run_id}" in text


def test_webhook_5xx_is_retried_and_delivered_once(instance, webhook_receiver):
    webhook_receiver.fail_next = 2
    webhook = AlertWebhookResource(webhook_url=webhook_receiver.url)
    run_failure_alert(failed_run_context(instance, {"alert_webhook": webhook}))
    assert len(webhook_receiver.paths) == 3 and len(webhook_receiver.messages) == 1
    assert webhook_receiver.paths[-1] == "/services/T000/B000/secret-token"


def test_no_webhook_configured_skips_with_a_reason(instance):
    result = run_failure_alert(failed_run_context(instance, {"alert_webhook": AlertWebhookResource()}))
    assert "MODELCREW_ALERT_WEBHOOK_URL" in result.skip_message


def test_webhook_url_never_appears_in_errors(instance, webhook_receiver, capfd):
    webhook_receiver.fail_next = 10
    webhook = AlertWebhookResource(webhook_url=webhook_receiver.url, max_attempts=2)
    try:
        run_failure_alert(failed_run_context(instance, {"alert_webhook": webhook}))
    except Exception as error:  # noqa: BLE001 - the assertion is about the message
        assert "secret-token" not in str(error) and "alert webhook POST message" in str(error)
    else:
        raise AssertionError("a webhook that keeps failing must raise")
    assert "secret-token" not in capfd.readouterr().err
