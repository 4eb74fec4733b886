"""The shipped fiscal CA bundles (deploy/trust/): the certificates pinned by fingerprint,
each issuing CA signed by its environment's root, and real FINA-issued certificates (CIS's
own) accepted by their own environment's bundle and refused by the other's, at upload and
as the signer of CIS's answers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from fiscal.hr_cis.soap import CisSigner, UntrustedCertificate
from services.portal.web.trust import TrustedCAs, UntrustedIssuer

ROOT = Path(__file__).resolve().parents[2]
TRUST = ROOT / "deploy" / "trust"
LEAVES = ROOT / "tests" / "fixtures" / "fina"
# While both leaves and every CA of the bundles were valid.
IN_2025 = datetime(2025, 6, 1, tzinfo=UTC)

PINNED = {
    "fina-production.pem": {
        "Fina Root CA": "5AB4FCDB180B5B6AF0D262A2375A2C77D25602015D96648756611E2E78C53AD3",
        "Fina RDC 2020": "4140B70629FDA4B8A36FD53FB0AA53237157869931B8B2308FD05DF3FF7D78AB",
        "Fina RDC 2025": "ECD2605CFE4A0B27ABEB670513850CB048E486815CCE4BDFBF698AD82403C2FE",
    },
    "fina-test.pem": {
        "Fina Demo Root CA": "A0628E66BCFC6DED7B6D8457DF57AD5477EE55B7D6E1161E25212BD5B1B1E14D",
        "Fina Demo CA 2020": "9771586D69DCA73D70E196B7AA059DEF3D47B2DE4BC080E738E5B1BC8A105BD2",
    },
}


def _leaf(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((LEAVES / name).read_bytes())


@pytest.mark.parametrize("bundle", sorted(PINNED))
def test_a_bundle_holds_the_pinned_cas_each_signed_by_its_root(bundle: str) -> None:
    trusted = TrustedCAs.load(TRUST / bundle)
    found = {name: certificate.fingerprint(hashes.SHA256()).hex().upper()
             for name, certificate in zip(trusted.names, trusted.certificates, strict=True)}
    assert found == PINNED[bundle]
    root, *issuing = trusted.certificates
    root.verify_directly_issued_by(root)
    for certificate in issuing:
        certificate.verify_directly_issued_by(root)


@pytest.mark.parametrize(("leaf", "own", "other", "issuer"), [
    ("fiskalcis-2024.pem", "fina-production.pem", "fina-test.pem", "Fina RDC 2020"),
    ("fiskalcistest-2024.pem", "fina-test.pem", "fina-production.pem", "Fina Demo CA 2020"),
])
def test_a_fina_certificate_is_trusted_by_its_environment_only(
    leaf: str, own: str, other: str, issuer: str,
) -> None:
    certificate = _leaf(leaf)
    TrustedCAs.load(TRUST / own).check(certificate, [], IN_2025)
    with pytest.raises(UntrustedIssuer, match=f"issued by '{issuer}'"):
        TrustedCAs.load(TRUST / other).check(certificate, [], IN_2025)


@pytest.mark.parametrize(("leaf", "own", "other", "subject", "issuer"), [
    ("fiskalcis-2024.pem", "fina-production.pem", "fina-test.pem",
     "CN=fiskalcis,L=ZAGREB,organizationIdentifier=HR18683136487,"
     "O=REPUBLIKA HRVATSKA MINISTARSTVO FINANCIJA,C=HR",
     "CN=Fina RDC 2020,O=Financijska agencija,C=HR"),
    ("fiskalcistest-2024.pem", "fina-test.pem", "fina-production.pem",
     "CN=fiskalcistest,L=ZAGREB,organizationIdentifier=HR02994650199,O=APIS IT D.O.O.,C=HR",
     "CN=Fina Demo CA 2020,O=Financijska agencija,C=HR"),
])
def test_cis_answers_are_trusted_by_name_under_fina_s_chain(
    leaf: str, own: str, other: str, subject: str, issuer: str,
) -> None:
    """The reporter's trust by name (FISCOBRIDGE_REPORTER_CIS_CA with the signer's subject
    and issuer as `openssl x509 -nameopt rfc2253` prints them) accepts CIS's own
    certificate under its environment's FINA chain, and under the other's refuses it."""
    certificate = _leaf(leaf)

    def signer(bundle: str) -> CisSigner:
        return CisSigner.named(subject, issuer, TrustedCAs.load(TRUST / bundle).certificates)

    signer(own).check(certificate, now=IN_2025)
    with pytest.raises(UntrustedCertificate):
        signer(other).check(certificate, now=IN_2025)
    with pytest.raises(UntrustedCertificate):  # and not once it has expired
        signer(own).check(certificate, now=datetime(2026, 12, 3, tzinfo=UTC))
