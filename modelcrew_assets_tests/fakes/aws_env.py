"""Dummy AWS settings so nothing in a test reaches a real account or the instance metadata service."""

import os

TEST_REGION = "us-east-2"


def use_test_aws_environment() -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=TEST_REGION,
        AWS_EC2_METADATA_DISABLED="true",
    )
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SQS",
        "MODELCREW_UPLOAD_QUEUE_URL",
    ):
        os.environ.pop(name, None)
