"""Pictures in the UI that are also files: the inline preview a person looks at first (Dagster shows a
data-URI image in markdown metadata) and the full-size JPEG in storage beside the stage's output, linked."""

from __future__ import annotations

import dagster as dg
from PIL import Image

from modelcrew_assets.imaging import encode_jpeg, markdown_image
from modelcrew_assets.object_store import Storage


def stored_preview(
    storage: Storage, name: str, key: str, image: Image.Image, alt: str, max_side: int = 960, caption: str = ""
) -> dict[str, dg.MetadataValue]:
    """`name`: the inline picture (plus `caption` under it); `<name>_uri`: where the full-size file is."""
    put = storage.put_bytes(key, encode_jpeg(image, quality=90), "image/jpeg")
    return {
        name: dg.MetadataValue.md(markdown_image(image, alt, max_side=max_side) + caption),
        f"{name}_uri": dg.MetadataValue.path(put.uri),
    }
