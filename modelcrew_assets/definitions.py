"""Everything Dagster loads: each stage contributes its own Definitions; resources come from the env."""

import dagster as dg

from modelcrew_assets import intake
from modelcrew_assets.resources.storage import DEFAULT_STORAGE_URL, StorageResource
from modelcrew_assets.settings import STORAGE_URL_ENV, env_if_set

resources = {
    "storage": StorageResource(url=env_if_set(STORAGE_URL_ENV) or DEFAULT_STORAGE_URL, region=env_if_set("AWS_REGION")),
}

defs = dg.Definitions.merge(intake.defs, dg.Definitions(resources=resources))
