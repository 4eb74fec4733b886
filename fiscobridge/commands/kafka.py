"""`fiscobridge kafka up|down|status|fetch` and `fiscobridge topics create|list`.

When KAFKA_BOOTSTRAP_SERVERS is set (environment or `.env`), every client uses that
cluster; `kafka up` then leaves the local broker alone rather than start one nobody uses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from aiokafka.errors import KafkaError

from runtime.kafka.admin import TopicsReport, cluster_topics, ensure_topics
from runtime.kafka.jars import KAFKA_VERSION, MissingTool, fetch_jars, jars_present
from runtime.kafka.local import DEFAULT_PORT, HOST, LocalKafka, LocalKafkaError
from runtime.settings import KafkaSettings, home_dir
from schemas.topics import registry

T = TypeVar("T")

_dir_option = click.option(
    "--dir",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="broker state directory [default: <fiscobridge home>/kafka]",
)


def _local(data_dir: Path | None, port: int = DEFAULT_PORT) -> LocalKafka:
    return LocalKafka(data_dir or home_dir() / "kafka", port)


def _external_cluster() -> str | None:
    settings = KafkaSettings()
    return settings.bootstrap_servers if "bootstrap_servers" in settings.model_fields_set else None


@click.group("kafka")
def kafka() -> None:
    """The local single-node Kafka broker (KRaft) for development and tests."""


@kafka.command("up")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="0: any free port")
@_dir_option
def up(port: int, data_dir: Path | None) -> None:
    """Start the broker (no-op if running); returns once it answers metadata requests."""
    external = _external_cluster()
    if external:
        click.echo(f"KAFKA_BOOTSTRAP_SERVERS is set ({external}): using it, not starting a broker")
        return
    broker = _local(data_dir, port)
    began = time.monotonic()
    try:
        if not jars_present():
            click.echo(f"fetching Kafka {KAFKA_VERSION} from Maven Central (first run only)...")
            fetch_jars()
        before = broker.status()
        status = broker.start()
    except (MissingTool, LocalKafkaError) as error:
        raise click.ClickException(str(error)) from error
    if before.running:
        click.echo(f"already {status}")
    else:
        click.echo(f"{status}, up in {time.monotonic() - began:.1f}s; log: {broker.log_file}")
    if status.port != DEFAULT_PORT:
        click.echo(f"point clients at it: export KAFKA_BOOTSTRAP_SERVERS={HOST}:{status.port}")


@kafka.command("down")
@_dir_option
def down(data_dir: Path | None) -> None:
    """Stop the broker cleanly (SIGTERM, then SIGKILL after 30s)."""
    broker = _local(data_dir)
    try:
        stopped = broker.stop()
    except LocalKafkaError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"stopped (data kept in {broker.data_dir})" if stopped else "was not running")


@kafka.command("status")
@_dir_option
def status(data_dir: Path | None) -> None:
    """Say whether the broker runs, on which port, with which pid."""
    external = _external_cluster()
    if external:
        click.echo(f"KAFKA_BOOTSTRAP_SERVERS is set: clients use {external}")
    click.echo(f"local broker {_local(data_dir).status()}")


@kafka.command("fetch")
def fetch() -> None:
    """Download the pinned Kafka jars into the cache (setup does this; no-op when cached)."""
    try:
        click.echo(f"Kafka {KAFKA_VERSION} jars in {fetch_jars()}")
    except MissingTool as error:
        raise click.ClickException(str(error)) from error


@click.group("topics")
def topics() -> None:
    """The topics of the registry (schemas/topics.py) on the cluster."""


@topics.command("create")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=None,
    help="partitions per topic [default: KAFKA_PARTITIONS, else 12]",
)
def create(partitions: int | None) -> None:
    """Create every registry topic that is missing and check the ones that exist.

    A second run changes nothing. Exits non-zero when an existing topic differs from
    the registry (partition count, retention, cleanup policy).
    """
    settings = KafkaSettings()
    report = _admin(ensure_topics(settings, registry(partitions or settings.partitions)), settings)
    _print(report)
    if not report.ok:
        raise click.exceptions.Exit(1)


@topics.command("list")
@click.option("--partitions", type=click.IntRange(min=1), default=None)
def list_(partitions: int | None) -> None:
    """Show each registry topic's state, and any other topics on the cluster."""
    settings = KafkaSettings()
    report = _admin(
        ensure_topics(settings, registry(partitions or settings.partitions), create=False),
        settings,
    )
    _print(report)
    known = {o.name for o in report.outcomes}
    others = _admin(cluster_topics(settings), settings)
    for name, count in sorted(others.items()):
        if name not in known:
            click.echo(f"{'other':<8} {name} ({count} partitions, not in the registry)")
    if not report.ok:
        raise click.exceptions.Exit(1)


def _admin(coroutine: Coroutine[Any, Any, T], settings: KafkaSettings) -> T:
    try:
        return asyncio.run(coroutine)
    except (KafkaError, OSError) as error:
        raise click.ClickException(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {error!r}. "
            "Start the local one with `fiscobridge kafka up`, or set KAFKA_BOOTSTRAP_SERVERS."
        ) from error


def _print(report: TopicsReport) -> None:
    for outcome in report.outcomes:
        click.echo(outcome.describe())
    click.echo(report.summary())
