"""Optional C2PA Content Credentials on exports, signed with a throwaway certificate made in the test."""

from __future__ import annotations

import io

import c2pa
import pytest
from PIL import Image

from modelcrew_assets.platform_exports.labels import TRAINED_ALGORITHMIC_MEDIA, AiLabel, read_digital_source_type
from modelcrew_assets.platform_exports.platforms import BUILTIN_PLATFORMS
from modelcrew_assets.platform_exports.provenance import ProvenanceError
from modelcrew_assets.platform_exports.render import ExportSettings, SourceImage, render_source
from modelcrew_assets.resources.c2pa_signing import C2paSigningResource
from modelcrew_assets.settings import MissingCredentialError
from modelcrew_assets_tests.platform_export_images import encode, throwaway_signing_certificate

LABEL = AiLabel(TRAINED_ALGORITHMIC_MEDIA, "blondie", "AI-generated image of blondie")


@pytest.fixture(scope="module")
def certificate() -> tuple[str, str]:
    return throwaway_signing_certificate()


def render(signing) -> bytes:
    settings = ExportSettings((BUILTIN_PLATFORMS["instagram_feed"],), c2pa=signing)
    source = SourceImage("0001.png", encode(Image.new("RGB", (800, 1000), (90, 120, 160)), "PNG"), LABEL)
    return render_source(source, settings)[0].jpeg


def test_exports_carry_a_valid_signed_c2pa_manifest_with_the_ai_source_type(certificate):
    chain, key = certificate
    jpeg = render(C2paSigningResource(cert_chain_pem=chain, private_key_pem=key).signing())
    reader = c2pa.Reader("image/jpeg", io.BytesIO(jpeg))
    assert reader.get_validation_state() in ("Valid", "Trusted")
    actions = [a for a in reader.get_active_manifest()["assertions"] if a["label"].startswith("c2pa.actions")]
    assert actions[0]["data"]["actions"][0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert reader.get_active_manifest()["signature_info"]["issuer"] == "modelcrew tests"
    assert read_digital_source_type(jpeg) == TRAINED_ALGORITHMIC_MEDIA  # the XMP label survives signing
    assert Image.open(io.BytesIO(jpeg)).size == (1080, 1350)


def test_without_a_certificate_exports_have_no_c2pa_manifest():
    assert C2paSigningResource().signing() is None
    with pytest.raises(c2pa.C2paError):
        c2pa.Reader("image/jpeg", io.BytesIO(render(None)))


def test_a_certificate_without_its_key_is_refused_naming_the_missing_variable(certificate):
    with pytest.raises(MissingCredentialError, match="MODELCREW_C2PA_KEY_PEM is not set"):
        C2paSigningResource(cert_chain_pem=certificate[0]).signing()


def test_a_key_that_does_not_match_the_certificate_fails_without_echoing_the_key(certificate):
    other_key = throwaway_signing_certificate()[1]
    signing = C2paSigningResource(cert_chain_pem=certificate[0], private_key_pem=other_key).signing()
    with pytest.raises(ProvenanceError, match="C2PA signing of 0001 1080x1350 failed") as error:
        render(signing)
    assert "PRIVATE KEY" not in str(error.value) and other_key[40:80] not in str(error.value)
