"""Optional C2PA Content Credentials: a signed manifest saying the image (or reel) was created by a trained
model (the same IPTC DigitalSourceType as the XMP label), embedded in the JPEG or MP4. Only when a signing
certificate and key are configured; the XMP label is written either way."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Literal

from modelcrew_assets.platform_exports.labels import AiLabel

SigningAlgorithm = Literal["es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519"]


class ProvenanceError(RuntimeError):
    """The C2PA manifest could not be signed; says which setting to check (never echoes the key)."""


@dataclass(frozen=True)
class C2paSigning:
    cert_chain_pem: bytes  # the signing certificate first, then its intermediates
    private_key_pem: bytes = field(repr=False)
    algorithm: SigningAlgorithm = "es256"
    timestamp_url: str | None = None  # an RFC 3161 time-stamp authority; none means no trusted time


# The formats signed: export JPEGs and generated_reels' MP4s (c2pa-python embeds the manifest in either).
SignedMime = Literal["image/jpeg", "video/mp4"]


def sign_media(data: bytes, mime_type: SignedMime, label: AiLabel, title: str, signing: C2paSigning) -> bytes:
    """The file with a signed C2PA manifest embedded (a `c2pa.created` action with the label's source type);
    its XMP and pixels are unchanged."""
    import c2pa  # imported only when signing is configured: it loads a large native library

    manifest = {
        "claim_generator_info": [{"name": "modelcrew"}],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": label.digital_source_type}]},
            }
        ],
    }
    info = c2pa.C2paSignerInfo(
        alg=signing.algorithm.encode(),
        sign_cert=signing.cert_chain_pem,
        private_key=signing.private_key_pem,
        ta_url=signing.timestamp_url.encode() if signing.timestamp_url else None,
    )
    signed = io.BytesIO()
    try:
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest) as builder:
            builder.sign(signer, mime_type, io.BytesIO(data), signed)
    except c2pa.C2paError as error:
        raise ProvenanceError(
            f"C2PA signing of {title} failed ({type(error).__name__}); check that the certificate chain "
            f"(leaf first, PEM) matches the private key and the {signing.algorithm} algorithm"
        ) from None
    return signed.getvalue()


def sign_jpeg(jpeg: bytes, label: AiLabel, title: str, signing: C2paSigning) -> bytes:
    """sign_media for an export JPEG (render.py's call)."""
    return sign_media(jpeg, "image/jpeg", label, title, signing)
