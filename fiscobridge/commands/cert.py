"""`fiscobridge cert inspect`: what a fiscal certificate (PKCS#12) holds, or why it is unusable."""

from __future__ import annotations

from pathlib import Path

import click

from fiscal.hr_cis.certificate import CertificateError, load_certificate


@click.group("cert")
def cert() -> None:
    """Fiscal certificates (PKCS#12 .pfx/.p12 files)."""


@cert.command("inspect")
@click.argument("pfx", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    envvar="FISCOBRIDGE_PFX_PASSWORD",
    help="the file's password (prompted when omitted; or FISCOBRIDGE_PFX_PASSWORD)",
)
@click.option("--oib", default=None, help="fail unless the certificate belongs to this OIB")
@click.pass_context
def inspect(ctx: click.Context, pfx: Path, password: str, oib: str | None) -> None:
    """Show subject, issuer, serial, OIB, validity and fingerprint; exit 2 if unusable."""
    try:
        certificate = load_certificate(pfx.read_bytes(), password, expected_oib=oib)
    except CertificateError as error:
        click.echo(f"{pfx}: unusable ({error.code}): {error}", err=True)
        ctx.exit(2)
    rows = (
        ("subject", certificate.subject),
        ("issuer", certificate.issuer),
        ("serial", f"{certificate.serial} (0x{certificate.serial:x})"),
        ("OIB", certificate.oib),
        ("valid from", f"{certificate.not_before:%Y-%m-%d %H:%M:%S} UTC"),
        ("valid to", f"{certificate.not_after:%Y-%m-%d %H:%M:%S} UTC"),
        ("SHA-256", certificate.fingerprint_sha256),
    )
    for label, value in rows:
        click.echo(f"{label:<11} {value}")
