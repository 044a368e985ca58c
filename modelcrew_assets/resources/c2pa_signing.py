"""C2paSigningResource: the certificate and key that sign C2PA Content Credentials into exports (optional)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from modelcrew_assets.platform_exports.provenance import C2paSigning, SigningAlgorithm
from modelcrew_assets.settings import MissingCredentialError

CERT_ENV = "MODELCREW_C2PA_CERT_PEM"
KEY_ENV = "MODELCREW_C2PA_KEY_PEM"
TIMESTAMP_URL_ENV = "MODELCREW_C2PA_TSA_URL"


class C2paSigningResource(dg.ConfigurableResource):
    """Set both the certificate chain and the private key (PEM text) to sign; set neither to skip C2PA."""

    cert_chain_pem: str | None = Field(default=None, description="signing certificate, then intermediates (PEM)")
    private_key_pem: str | None = Field(default=None, description="the certificate's private key (PEM)")
    algorithm: SigningAlgorithm = "es256"
    timestamp_url: str | None = Field(default=None, description="RFC 3161 time-stamp authority URL")

    def signing(self) -> C2paSigning | None:
        if not self.cert_chain_pem and not self.private_key_pem:
            return None
        missing = CERT_ENV if not self.cert_chain_pem else KEY_ENV if not self.private_key_pem else None
        if missing:
            raise MissingCredentialError(
                f"C2PA signing needs both {CERT_ENV} and {KEY_ENV}; {missing} is not set. Set it, or unset "
                "the other one to export without a C2PA manifest (the XMP AI label is written either way)"
            )
        return C2paSigning(
            cert_chain_pem=self.cert_chain_pem.encode(),
            private_key_pem=self.private_key_pem.encode(),
            algorithm=self.algorithm,
            timestamp_url=self.timestamp_url,
        )
