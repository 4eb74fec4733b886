"""The top-level docker-compose.yml, checked without Docker: it parses, every command it
runs exists in the `fiscobridge` CLI, every FISCOBRIDGE_*/KAFKA_* variable it sets is read
by a settings class, every service has a /readyz healthcheck on the port it listens on,
Prometheus scrapes each of them there, and topics get at least 3 partitions."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from fiscobridge.cli import cli
from fiscobridge.commands.run import SERVICES
from fiscobridge.stack import port_variable
from runtime.settings import KafkaSettings
from schemas.topics import registry

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _settings_classes() -> list[type[BaseSettings]]:
    """Every pydantic-settings class in the source tree (found by its text, then imported)."""
    found: list[type[BaseSettings]] = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", ".venv", "bench") or not re.search(
                r"(Base|Duration)Settings\)", path.read_text()):
            continue
        module = importlib.import_module(".".join(rel.with_suffix("").parts))
        found += [v for v in vars(module).values()
                  if isinstance(v, type) and issubclass(v, BaseSettings) and v is not BaseSettings
                  and v.__module__ == module.__name__]
    return found


def _variables(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads (names upper-cased)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names = set()
    for name, info in settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str)}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(prefix + name)
    return {n.upper() for n in names}


def _fiscobridge_commands(command: str | list[str]) -> list[list[str]]:
    """The `fiscobridge ...` invocations in a compose command (`sh -c "a && b"` too)."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in re.split(r"&&|;", argv[2]) if part.strip()]
    return [argv]


def _resolve(args: list[str]) -> click.Command:
    """The CLI command `args` runs, its arguments parsed as click would (a bad choice
    or an unknown option raises click.UsageError)."""
    cmd: click.Command = cli
    ctx = cli.make_context("fiscobridge", list(args))
    rest = [*ctx._protected_args, *ctx.args]
    while isinstance(cmd, click.Group):
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd, rest = sub, [*getattr(ctx, "_protected_args", []), *ctx.args]
    assert not rest, f"{args}: left over {rest}"
    return cmd


def _ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from this repository's image."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


def test_it_is_at_the_top_level_and_builds_from_deploy() -> None:
    assert not (ROOT / "deploy" / "docker-compose.yml").exists()
    compose = _compose()
    for name, service in _ours(compose).items():
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), volume


def test_every_dependency_is_a_service_and_setup_runs_first() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services and needed != name, (name, needed)
    for name in SERVICES:
        assert services[name]["depends_on"]["setup"] == {
            "condition": "service_completed_successfully"}


def test_every_command_exists_in_the_cli() -> None:
    compose = _compose()
    ran = []
    for name, service in _ours(compose).items():
        for args in _fiscobridge_commands(service["command"]):
            assert args[0] == "fiscobridge", (name, args)
            _resolve(args[1:])  # raises on an unknown command, argument or option
            ran.append(args[1:])
    # Every service the CLI can run is deployed, and the topics and schema are prepared.
    assert {tuple(a) for a in ran} >= {("run", s) for s in SERVICES}
    assert ["topics", "create"] in ran and ["db", "upgrade"] in ran


def test_the_resolver_rejects_what_the_cli_would() -> None:
    # The check above can fail: a service the CLI cannot run is refused.
    with pytest.raises(click.UsageError):
        _resolve(["run", "bookkeeper"])
    with pytest.raises(click.UsageError):
        _resolve(["topics", "make"])


def test_every_variable_it_sets_is_read_by_a_settings_class() -> None:
    read = set().union(*(_variables(s) for s in _settings_classes()))
    assert "FISCOBRIDGE_REPORTER_CIS_URL" in read and "FISCOBRIDGE_ZOHO_CLIENT_ID" in read
    assert "FISCOBRIDGE_PORTAL_OPS_NOTHING" not in read
    for name, service in _ours(_compose()).items():
        for variable in service["environment"]:
            if variable.startswith(("FISCOBRIDGE_", "KAFKA_")):
                assert variable.upper() in read, f"{name}: nothing reads {variable}"


def _port(service: str, environment: dict[str, Any]) -> int:
    return int(environment[port_variable(service)])


def test_every_service_has_a_readiness_healthcheck_and_is_scraped() -> None:
    compose = _compose()
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"]
               for t in c["targets"]}
    for name in SERVICES:
        service = compose["services"][name]
        env = service["environment"]
        port = _port(name, env)
        host = env.get(port_variable(name).removesuffix("PORT") + "HOST")
        assert host == "0.0.0.0", f"{name} must listen beyond its container to be scraped"
        check = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/readyz" in check, (name, check)
        assert f"{name}:{port}" in targets, (name, targets)
    assert (ROOT / "deploy" / "prometheus" / "alerts.yml").name in str(prometheus["rule_files"])


def test_topics_get_three_partitions_or_more_on_one_replica() -> None:
    compose = _compose()
    setup = compose["services"]["setup"]
    partitions = int(setup["environment"].get("KAFKA_PARTITIONS", KafkaSettings().partitions))
    for args in _fiscobridge_commands(setup["command"]):
        if args[1:3] == ["topics", "create"] and "--partitions" in args:
            partitions = int(args[args.index("--partitions") + 1])
    assert partitions >= 3
    assert all(t.partitions >= 3 for t in registry(partitions))
    kafka = compose["services"]["kafka"]["environment"]
    # One broker: every internal topic on one replica (deploy/kafka-cluster.md for three).
    assert {int(v) for k, v in kafka.items() if k.endswith("REPLICATION_FACTOR")} == {1}
    cluster = (ROOT / "deploy" / "kafka-cluster.md").read_text()
    for setting in ("replication factor 3", "min.insync.replicas=2", "acks=all"):
        assert setting in cluster
