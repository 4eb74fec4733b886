"""The dashboard and the alert rules against a real Prometheus (Debian's `prometheus`
package, installed by scripts/setup.sh): the rules pass `promtool check`, and on a
running stack of every service, with invoices flowing and CIS answering s006 to some,
every metric any dashboard panel or rule names has a sample, every panel's query has a
result, and every rule evaluates without error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from fiscobridge.provision import demo_integration
from fiscobridge.stack import PIPELINE, LocalStack, free_port
from runtime.kafka import clients
from runtime.kafka.admin import ensure_topics
from runtime.settings import KafkaSettings
from runtime.store.store import Store
from runtime.vault import Vault, new_key, parse_keys
from sandbox.load import drive
from schemas.topics import INVOICES_RETRY, table_changelogs

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
SERVICES = (*PIPELINE, "poller")
METRIC = re.compile(r"\bfiscobridge_[a-z0-9_]+\b")


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} missing: scripts/setup.sh installs Debian's prometheus package"
    return found


def _panel_queries() -> list[tuple[str, str]]:
    queries = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                queries.append((f"{path.name}: {panel['title']}", target["expr"]))
    return queries


def _rule_queries() -> list[tuple[str, str]]:
    rules = yaml.safe_load(RULES.read_text())
    return [(rule["alert"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def test_the_alert_rules_pass_promtool(tmp_path: Path) -> None:
    checked = subprocess.run([_tool("promtool"), "check", "rules", str(RULES)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    names = {name for name, _ in _rule_queries()}
    assert names == {"ConsumerLagGrowing", "DeadLettersWaiting", "CisErrorRate",
                     "IntegrationInactive", "WriteBackFailing", "InvoicesLate"}
    # promtool refuses a broken rule (so the check above can fail).
    broken = tmp_path / "broken.yml"
    broken.write_text("groups: [{name: x, rules: [{alert: X, expr: 'sum(rate(x[5m])'}]}]\n")
    assert subprocess.run([_tool("promtool"), "check", "rules", str(broken)],
                          capture_output=True).returncode != 0


def test_the_deployed_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    # The compose file mounts both beside each other; promtool reads the rules from there.
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(RULES.parent / name, tmp_path / name)
    config = tmp_path / "prometheus.yml"
    checked = subprocess.run([_tool("promtool"), "check", "config", str(config)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    kafka_bootstrap: str, kafka_topics: object, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[LocalStack, Store, KafkaSettings]]:
    home: Path = tmp_path_factory.mktemp("metrics-stack")
    key = new_key()
    store = Store.open(f"sqlite+aiosqlite:///{home / 'fiscobridge.db'}",
                       vault=Vault(parse_keys(key)))
    await store.migrate()
    run = uuid.uuid4().hex[:8]  # private consumer groups: other tests share the broker
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    report = await ensure_topics(kafka, table_changelogs(f"metrics-fiscalizer-{run}",
                                                         kafka.partitions))
    assert report.ok, report.summary()
    stack = LocalStack(
        home=home, kafka_bootstrap=kafka_bootstrap, master_key=key, services=SERVICES,
        extra_env={
            "FISCOBRIDGE_FISCALIZER_APP_ID": f"metrics-fiscalizer-{run}",
            "FISCOBRIDGE_REPORTER_GROUP_ID": f"metrics-reporter-{run}",
            "FISCOBRIDGE_PORTAL_PROJECTOR_GROUP_ID": f"metrics-projector-{run}",
            "FISCOBRIDGE_REPORTER_RETRY_BASE": "0.2",
            "FISCOBRIDGE_REPORTER_RETRY_CAP": "1",
            "FISCOBRIDGE_METRICS_WATCH": "1",
        },
    )
    await stack.start()
    try:
        yield stack, store, kafka
    finally:
        await stack.stop()
        await store.close()


@contextlib.contextmanager
def prometheus(home: Path, targets: list[str]) -> Iterator[str]:
    """A real Prometheus scraping `targets` every second, with the deployed rules."""
    port = free_port()
    shutil.copy(RULES, home / "alerts.yml")
    (home / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": "fiscobridge",
                            "static_configs": [{"targets": targets}]}],
    }))
    log = (home / "prometheus.log").open("w")
    process = subprocess.Popen(
        [_tool("prometheus"), f"--config.file={home / 'prometheus.yml'}",
         f"--storage.tsdb.path={home / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def _until(what: str, check: Any, timeout: float) -> Any:
    """Call `check` until it returns something truthy; its last answer is the message."""
    deadline = time.monotonic() + timeout
    while True:
        result, detail = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {timeout}s: {detail}")
        await asyncio.sleep(1)


async def _query(http: httpx.AsyncClient, url: str, expr: str) -> list[Any]:
    answer = (await http.get(f"{url}/api/v1/query", params={"query": expr})).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[Any] = answer["data"]["result"]
    return result


async def test_every_metric_of_the_dashboards_and_rules_has_a_sample(
    stack: tuple[LocalStack, Store, KafkaSettings],
) -> None:
    local, store, kafka = stack
    panels, rules = _panel_queries(), _rule_queries()
    names = {m for _, expr in panels + rules for m in METRIC.findall(expr)}
    assert len(names) >= 15, names  # the extraction finds the metrics, not nothing
    # A histogram is exported as _bucket/_sum/_count series; the name in a query is one.
    made = await demo_integration(store, kafka, local.home / "sandbox-ca")
    async with httpx.AsyncClient(timeout=10) as http:
        # Some submissions fail (s006): CIS error counts, retries, and then fiscalized.
        (await http.post(f"{local.cis_base_url}/_sandbox/faults", json={"s006": 0.3})) \
            .raise_for_status()
        report = await drive(kafka, local.ingest_url, [(made.uid, made.webhook_secret)], 20,
                             concurrency=4, timeout=120)
        assert "fiscalized 20" in "\n".join(report.lines()), report.lines()
        (await http.post(f"{local.cis_base_url}/_sandbox/faults", json={"s006": 0})) \
            .raise_for_status()

        targets = [f"127.0.0.1:{local.ports[name]}" for name in SERVICES]
        with prometheus(local.home, targets) as url:
            async def ready() -> tuple[bool, str]:
                with contextlib.suppress(httpx.HTTPError):
                    return (await http.get(f"{url}/-/ready")).status_code == 200, "not ready"
                return False, "not listening"

            await _until("prometheus ready", ready, 60)

            async def all_up() -> tuple[bool, object]:
                up = await _query(http, url, "up")
                healthy = {s["metric"]["instance"] for s in up if s["value"][1] == "1"}
                return healthy == set(targets), up

            await _until("every service scraped", all_up, 30)

            async def missing_names() -> tuple[bool, object]:
                absent = [n for n in sorted(names)
                          if not await _query(http, url, f'count({{__name__="{n}"}})')]
                return not absent, absent

            await _until("every named metric has a sample", missing_names, 30)

            async def empty_panels() -> tuple[bool, object]:
                empty = [title for title, expr in panels if not await _query(http, url, expr)]
                return not empty, empty

            await _until("every panel's query has a result", empty_panels, 30)

            async def rules_evaluated() -> tuple[bool, object]:
                answer = (await http.get(f"{url}/api/v1/rules")).json()["data"]["groups"]
                seen = {r["name"]: r for g in answer for r in g["rules"]}
                bad = {n: r.get("lastError") or r.get("health") for n, r in seen.items()
                       if r.get("health") != "ok"}
                return set(seen) == {n for n, _ in rules} and not bad, (sorted(seen), bad)

            await _until("every rule evaluated", rules_evaluated, 30)

            # A dead letter travels broker -> portal's gauge -> rule: its alert is pending
            # (it fires after its `for`). The retry DLQ: no other test reads it.
            producer = clients.producer(kafka)
            await producer.start()
            try:
                await producer.send_and_wait(INVOICES_RETRY.dlq, b"{}", key=made.uid.encode())
            finally:
                await producer.stop()

            async def dead_letter_alert() -> tuple[bool, object]:
                alerts = (await http.get(f"{url}/api/v1/alerts")).json()["data"]["alerts"]
                ours = [a for a in alerts if a["labels"].get("alertname") == "DeadLettersWaiting"
                        and a["labels"].get("topic") == INVOICES_RETRY.dlq]
                return bool(ours) and ours[0]["state"] in ("pending", "firing"), alerts

            await _until("DeadLettersWaiting pending", dead_letter_alert, 30)

            # The traffic is in the figures, not just zeros: this integration has a
            # series of its own, and CIS errors were counted by code.
            # The projector counts an outcome once it applied it, and the next scrape
            # brings it in. A process gives its busiest integrations a series of their
            # own and the rest "other": on a broker earlier tests filled, this small
            # integration may be counted there.
            for stage in ("fiscalized", "received"):
                expr = (f'sum(fiscobridge_integration_invoices_total{{integration=~'
                        f'"{made.uid}|other",stage="{stage}"}})')

                async def counted(expr: str = expr) -> tuple[bool, object]:
                    found = await _query(http, url, expr)
                    return bool(found) and float(found[0]["value"][1]) >= 20, found

                await _until(f"{stage} counted for the integration", counted, 30)
            s006 = await _query(http, url, 'fiscobridge_cis_errors_total{code="s006"}')
            assert s006 and float(s006[0]["value"][1]) > 0, s006
            states = await _query(http, url, 'fiscobridge_invoices{state="fiscalized"}')
            assert states and float(states[0]["value"][1]) >= 20, states
