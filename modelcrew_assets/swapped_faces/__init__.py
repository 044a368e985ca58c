"""swapped_faces: the model's face swapped onto its target photos (MaxStudio or dry-run), with a ledger
that never pays twice and a quality gate on the results."""

import dagster as dg

from modelcrew_assets.swapped_faces.assets import swapped_faces
from modelcrew_assets.swapped_faces.checks import swapped_faces_quality_gate

defs = dg.Definitions(assets=[swapped_faces], asset_checks=[swapped_faces_quality_gate])
