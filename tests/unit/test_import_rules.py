"""The layering rules, read from the source (AST; nothing is imported):

- a service never imports another service: `services/X` may import `services/X` only.
  What two services share lives below them (runtime/, schemas/, fiscal/, connectors/);
- production code never imports `sandbox/`; production is everything but tests/, bench/,
  sandbox/ itself, and fiscobridge/;
- fiscobridge/ is the composition root (the `fiscobridge` command: `dev`, `demo`,
  `sandbox ...`): it may import every service and the sandboxes, and nothing imports it
  but tests and benchmarks;
- runtime/ and the pure domain packages (schemas/, fiscal/, connectors/) import no service;
- the pipeline's services (fiscalizer, reporter, write-back) reach a tax authority only
  through its seam (fiscal/authority.py, fiscal/authorities.py), never an authority's
  package (fiscal.hr_cis); the seam itself names no authority's package but the registry;
- the pure domain packages import no Kafka client, stream processor or HTTP server
  (aiokafka, kafka, faust, mode, fastapi, starlette, uvicorn); schemas/ and fiscal/ no
  HTTP client either, connectors/ may use httpx (they are the clients of the accounting
  systems' APIs).

Every import statement counts, at module level or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from runtime.groups import ConsumerGroups

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ["schemas", "fiscal", "connectors", "runtime", "services", "fiscobridge",
              "scripts"]
NOT_PRODUCTION = ("tests", "bench", "sandbox")
DOMAIN = ("schemas", "fiscal", "connectors")
SERVERS_AND_STREAMS = ("aiokafka", "kafka", "faust", "mode", "fastapi", "starlette", "uvicorn")
HTTP_CLIENTS = ("httpx", "requests", "aiohttp")
HTTP_CLIENT_ALLOWED = ("connectors",)
AUTHORITY_USERS = ("services.fiscalizer", "services.reporter", "services.writeback")
AUTHORITY_PACKAGES = ("fiscal.hr_cis",)


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_of(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # `from services import portal` names a service too.
            found.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names
                         if name in ("services", "sandbox"))
    return found


def _files(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py") if ".venv" not in p.parts)


def _edges() -> list[tuple[Path, int, str, str]]:
    """(file, line, importing module, imported module) for every production import."""
    return [(path, line, _module_of(path), name)
            for path in _files(*PRODUCTION) for line, name in _imports(path)]


def _top(name: str, depth: int = 1) -> str:
    return ".".join(name.split(".")[:depth])


def _where(path: Path, line: int, name: str) -> str:
    return f"{path.relative_to(ROOT)}:{line} imports {name}"


def test_no_service_imports_another_service() -> None:
    bad = [_where(path, line, name) for path, line, module, name in _edges()
           if module.startswith("services.") and name.startswith("services.")
           and _top(module, 2) != _top(name, 2)]
    assert not bad, "a service imports another service:\n" + "\n".join(bad)


def test_production_code_never_imports_the_sandboxes() -> None:
    bad = [_where(path, line, name) for path, line, module, name in _edges()
           if _top(name) == "sandbox" and _top(module) != "fiscobridge"]
    assert not bad, "production code imports sandbox/:\n" + "\n".join(bad)


def test_only_tests_and_benchmarks_import_the_composition_root() -> None:
    bad = [_where(path, line, name) for path, line, module, name in _edges()
           if _top(name) == "fiscobridge" and _top(module) != "fiscobridge"]
    bad += [_where(path, line, name) for path in _files("sandbox")
            for line, name in _imports(path) if _top(name) == "fiscobridge"]
    assert not bad, "\n".join(bad)


def test_runtime_and_domain_import_no_service() -> None:
    bad = [_where(path, line, name) for path, line, module, name in _edges()
           if _top(module) in ("runtime", *DOMAIN) and _top(name) == "services"]
    assert not bad, "\n".join(bad)


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_pipeline_reaches_tax_authorities_only_through_the_seam() -> None:
    bad = [_where(path, line, name) for path, line, module, name in _edges()
           if any(_under(module, user) for user in AUTHORITY_USERS)
           and any(_under(name, package) for package in AUTHORITY_PACKAGES)]
    bad += [_where(ROOT / "fiscal" / "authority.py", line, name)
            for line, name in _imports(ROOT / "fiscal" / "authority.py")
            if any(_under(name, package) for package in AUTHORITY_PACKAGES)]
    assert not bad, ("import the authority seam (fiscal.authority, fiscal.authorities), not "
                     "an authority's package:\n" + "\n".join(bad))


def test_the_seam_rule_sees_an_authority_import() -> None:
    # The rule above would pass vacuously were the walker blind to these names.
    names = {name for _, name in _imports(ROOT / "fiscal" / "authorities.py")}
    assert any(_under(name, "fiscal.hr_cis") for name in names)
    assert _edges() and all(_under(u, "services") for u in AUTHORITY_USERS)


@pytest.mark.parametrize("package", DOMAIN)
def test_the_domain_is_pure(package: str) -> None:
    banned = SERVERS_AND_STREAMS + (() if package in HTTP_CLIENT_ALLOWED else HTTP_CLIENTS)
    bad = [_where(path, line, name) for path in _files(package)
           for line, name in _imports(path) if _top(name) in banned]
    assert not bad, f"{package}/ must not import {', '.join(banned)}:\n" + "\n".join(bad)


def test_the_walker_sees_every_kind_of_import() -> None:
    names = {name for _, name in _imports(ROOT / "fiscobridge" / "commands" / "dev.py")}
    assert "sandbox.cis.ca" in names  # imported inside a function
    assert any(name.startswith("runtime.") for name in names)


def test_the_portals_view_of_the_consumer_groups_is_the_services_own() -> None:
    from services.fiscalizer.settings import FiscalizerSettings
    from services.reporter.settings import ReporterSettings

    groups = ConsumerGroups()
    assert groups.fiscalizer == FiscalizerSettings().app_id
    assert groups.reporter == ReporterSettings().group_id
