"""`<home>/dev.json`: where a running `fiscobridge dev` listens, for the other commands.

`fiscobridge dev` writes it once its broker and topics are up and removes it when it
stops. Every other command reads it when no flag or variable says otherwise: the
broker (`KAFKA_BOOTSTRAP_SERVERS`, environment or `.env`), and for `demo` the ingest
URL (`--ingest-url` / `FISCOBRIDGE_INGEST_URL`). A file left behind by a dev that was
killed names a process that no longer exists, and is ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runtime.settings import home_dir

FILE_NAME = "dev.json"


@dataclass(frozen=True)
class DevEndpoints:
    pid: int
    kafka: str  # bootstrap servers
    ingest: str  # base URL; webhooks at /webhook/zoho/<uid>
    portal: str
    cis: str  # the CIS sandbox's SOAP endpoint
    zoho: list[str]  # com accounts, com api, eu accounts, eu api
    ops: dict[str, str] = field(default_factory=dict)  # service -> /healthz /readyz /metrics

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def path(home: Path | None = None) -> Path:
    return (home or home_dir()) / FILE_NAME


def write(endpoints: DevEndpoints, home: Path | None = None) -> Path:
    """Write atomically: a reader never sees half a file."""
    target = path(home)
    partial = target.with_suffix(".json.tmp")
    partial.write_text(endpoints.to_json())
    partial.replace(target)
    return target


def remove(pid: int, home: Path | None = None) -> None:
    """Remove the file if it is still this dev's (a second dev may have replaced it)."""
    found = read(home, require_alive=False)
    if found is not None and found.pid == pid:
        path(home).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read(home: Path | None = None, *, require_alive: bool = True) -> DevEndpoints | None:
    """The running dev's endpoints; None without a file, or when its dev is gone."""
    try:
        data = json.loads(path(home).read_text())
        found = DevEndpoints(**data)
    except (OSError, ValueError, TypeError):
        return None
    if require_alive and not _alive(found.pid):
        return None
    return found


def apply_to_environment(environ: MutableMapping[str, str] | None = None) -> DevEndpoints | None:
    """Point this process's Kafka clients at a running dev's broker unless
    KAFKA_BOOTSTRAP_SERVERS is set (environment or `.env`). Returns the endpoints used."""
    from runtime.settings import KafkaSettings

    env = os.environ if environ is None else environ
    if env.get("KAFKA_BOOTSTRAP_SERVERS"):
        return None
    if "bootstrap_servers" in KafkaSettings().model_fields_set:  # from .env
        return None
    found = read()
    if found is not None:
        env["KAFKA_BOOTSTRAP_SERVERS"] = found.kafka
    return found
