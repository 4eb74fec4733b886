"""`fiscobridge sandbox issue-cert|export-ca`: FINA-like test certificates from the sandbox CA."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import click
from cryptography.hazmat.primitives.serialization import pkcs12

from fiscal.hr_cis.oib import is_valid_oib
from sandbox.cis.ca import TestCA, default_ca_dir

_CA_DIR = click.option(
    "--ca-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where the sandbox CA lives [default: the FiscoBridge home's sandbox-ca]",
)


def _validate_oib(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not is_valid_oib(value):
        raise click.BadParameter(
            "an OIB is 11 digits whose last is the ISO 7064 MOD 11,10 check digit"
        )
    return value


@click.command("issue-cert")
@click.option("--oib", callback=_validate_oib, help="OIB to put in the subject's O field")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="password protecting the PKCS#12 file (prompted when omitted)",
)
@click.option("--cn", default="FISKAL 1", show_default=True, help="subject common name")
@click.option("--expired", is_flag=True, help="a certificate that expired yesterday")
@click.option("--foreign-ca", is_flag=True, help="issued by a CA the sandbox does not trust")
@click.option("--no-oib", is_flag=True, help="leave the OIB out of the subject")
@_CA_DIR
def issue_cert(
    oib: str | None,
    out: Path,
    password: str,
    cn: str,
    expired: bool,
    foreign_ca: bool,
    no_oib: bool,
    ca_dir: Path | None,
) -> None:
    """Issue a FINA-like fiscal certificate (.p12) for tests and demos."""
    if oib is None and not no_oib:
        raise click.UsageError("give --oib, or --no-oib for a certificate without one")
    if foreign_ca:
        ca = TestCA.create("Foreign Look-alike DEMO CA")
    else:
        ca = TestCA.load_or_create(ca_dir or default_ca_dir())
    pfx = ca.issue_pfx(oib or "", password, cn=cn, expired=expired, include_oib=not no_oib)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pfx)
    # Read back with pkcs12, not load_certificate: expired and OIB-less files are wanted here.
    bundle = pkcs12.load_pkcs12(pfx, password.encode())
    click.echo(f"wrote {out}")
    if bundle.cert is not None:
        certificate = bundle.cert.certificate
        click.echo(f"  subject  {certificate.subject.rfc4514_string()}")
        click.echo(f"  issuer   {certificate.issuer.rfc4514_string()}")
        click.echo(
            f"  valid    {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} to"
            f" {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )


@click.command("export-ca")
@click.option(
    "--out", "out", required=True, type=click.File("wb"), help="PEM file to write ('-': stdout)"
)
@_CA_DIR
def export_ca(out: IO[bytes], ca_dir: Path | None) -> None:
    """Write the sandbox CA's certificate (PEM): what a client trusts to accept test PFX files."""
    out.write(TestCA.load_or_create(ca_dir or default_ca_dir()).cert_pem())


COMMANDS: list[click.Command] = [issue_cert, export_ca]
