"""`fiscobridge sandbox cis`: the local stand-in for the Croatian tax authority's CIS."""

from __future__ import annotations

from pathlib import Path

import click

_probability = click.FloatRange(0, 1)


@click.command("cis")
@click.option("--port", type=int, default=8449, show_default=True, help="0: any free port")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--ca-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="the sandbox CA, created on first use [default: <fiscobridge home>/sandbox-ca]",
)
@click.option(
    "--spec-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="folder with FiskalizacijaSchema.xsd [default: ../shared/specs/hr-cis beside the repo]",
)
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option(
    "--jitter-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="uniform extra latency, 0..N ms",
)
@click.option(
    "--s006",
    type=_probability,
    default=0.0,
    show_default=True,
    help="probability of answering s006 (system error)",
)
@click.option(
    "--http500",
    type=_probability,
    default=0.0,
    show_default=True,
    help="probability of a bare HTTP 500",
)
@click.option(
    "--hang",
    type=_probability,
    default=0.0,
    show_default=True,
    help="probability of not answering for --hang-seconds",
)
@click.option(
    "--lost-answer",
    type=_probability,
    default=0.0,
    show_default=True,
    help="probability of accepting an invoice, then not answering",
)
@click.option(
    "--hang-seconds", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True
)
@click.option("--allow-sha1", is_flag=True, help="accept RSA-SHA1 request signatures")
@click.option("--answer-sha1", is_flag=True, help="sign answers with RSA-SHA1, as old answers")
@click.option(
    "--zki-hash",
    type=click.Choice(["sha1", "sha256"]),
    envvar="FISCOBRIDGE_CIS_ZKI_HASH",
    default=None,
    help="hash of the ZKI's RSA signature the ledger checks ZKIs with, as the profile"
    " signs them [env FISCOBRIDGE_CIS_ZKI_HASH; default: sha256, spec v2.7]",
)
def cis(
    port: int,
    host: str,
    ca_dir: Path | None,
    spec_dir: Path | None,
    latency_ms: float,
    jitter_ms: float,
    s006: float,
    http500: float,
    hang: float,
    lost_answer: float,
    hang_seconds: float,
    allow_sha1: bool,
    answer_sha1: bool,
    zki_hash: str | None,
) -> None:
    """Serve the CIS SOAP service (racuni, echo) with its checks s001-s005, fault
    injection, and /_sandbox/faults, /_sandbox/ledger, /_sandbox/stats controls."""
    from fiscal.hr_cis.zki import zki_hash as parse_zki_hash
    from sandbox.cis.app import CisSandbox
    from sandbox.cis.ca import (
        CERT_FILE,
        SERVICE_CERT_FILE,
        TestCA,
        default_ca_dir,
        load_or_create_service,
    )
    from sandbox.cis.checks import default_spec_dir
    from sandbox.cis.faults import Faults
    from sandbox.cis.server import SandboxServer

    directory = ca_dir or default_ca_dir()
    faults = Faults(
        latency_ms=latency_ms,
        jitter_ms=jitter_ms,
        s006=s006,
        http500=http500,
        hang=hang,
        lost_answer=lost_answer,
        hang_seconds=hang_seconds,
    )
    try:
        ca = TestCA.load_or_create(directory)
        sandbox = CisSandbox.create(
            ca,
            spec_dir or default_spec_dir(),
            allow_sha1=allow_sha1,
            answer_sha1=answer_sha1,
            faults=faults,
            service=load_or_create_service(ca, directory),
            zki_hash=parse_zki_hash(zki_hash) if zki_hash else None,
        )
        server = SandboxServer(sandbox, host, port)
    except (FileNotFoundError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"CIS sandbox: {server.url}")
    click.echo(f"  CA of the sandbox's certificates: {directory / CERT_FILE}")
    click.echo(
        f"  answers signed by: {directory / SERVICE_CERT_FILE}"
        " (the reporter's FISCOBRIDGE_REPORTER_CIS_TRUST)"
    )
    click.echo(f"  controls: {server.base_url}/_sandbox/faults | ledger | stats")
    from runtime.eventloop import use_uvloop
    from runtime.heap import freeze_live_objects

    use_uvloop()
    freeze_live_objects()
    server.run()


COMMANDS: list[click.Command] = [cis]
