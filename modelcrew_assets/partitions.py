"""Every asset is partitioned per model (persona): the partition key is the model's slug."""

import dagster as dg

models_partitions = dg.DynamicPartitionsDefinition(name="models")
