"""captions: one training caption per image, trigger word first, from hand, a vision model or a template."""

import dagster as dg

from modelcrew_assets.captions.assets import captions

defs = dg.Definitions(assets=[captions])
