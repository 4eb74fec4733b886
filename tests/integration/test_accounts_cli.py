# ruff: noqa: F811 - the fixtures imported below are parameters of the tests
"""`fiscobridge accounts set-tier` on the real store and broker: every live integration of
the account gets a `tier_changed` event on the topic and the tier in the store; bad input
changes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fiscal.hr_cis.settings import FiscalSettings
from runtime.settings import KafkaSettings
from runtime.store import Store
from runtime.store.rebuild import Topics
from schemas.events import IntegrationEventKind
from tests.integration.test_portal_helpers import integration_events
from tests.integration.test_store_cli import (  # noqa: F401 - fixtures
    Invoke,
    cli_env,
    create_args,
    end_offsets,
    invoke,
    pfx_files,
    topics,
)

pytestmark = [pytest.mark.kafka, pytest.mark.parametrize("database", ["sqlite"], indirect=True)]


async def _create(invoke: Invoke, pfx_files: dict[str, Path], settings: FiscalSettings,
                  email: str) -> str:
    result = await invoke(*create_args(pfx_files["demo"], pfx_files["password"], settings,
                                       **{"--account": email}))
    assert result.exit_code == 0, result.output
    return re.search(r"created integration (\S+) \(pending\)", result.output)[1]  # type: ignore[index]


async def test_set_tier_publishes_tier_changed_for_each_integration(
    invoke: Invoke, store: Store, pfx_files: dict[str, Path], fiscal_settings: FiscalSettings,
    kafka_settings: KafkaSettings, topics: Topics,
) -> None:
    # The CLI creates integrations without the portal's connection limit.
    first = await _create(invoke, pfx_files, fiscal_settings, "plan@obrt.hr")
    second = await _create(invoke, pfx_files, fiscal_settings, "plan@obrt.hr")
    other = await _create(invoke, pfx_files, fiscal_settings, "other@obrt.hr")
    removed = await invoke("integrations", "remove", second, "--yes")
    assert removed.exit_code == 0, removed.output

    result = await invoke("accounts", "set-tier", "--account", "plan@obrt.hr", "--tier",
                          "growth", "--reason", "ticket 42")
    assert result.exit_code == 0, result.output
    assert "Trial -> Growth" in result.output and first in result.output
    assert second not in result.output  # removed: left as it was

    assert (await store.integrations.get(first)).tier == "growth"  # type: ignore[union-attr]
    assert (await store.integrations.get(second)).tier == "trial"  # type: ignore[union-attr]
    assert (await store.integrations.get(other)).tier == "trial"  # type: ignore[union-attr]
    events = await integration_events(kafka_settings, first, topic=topics.events)
    changed = [e for e in events if e.kind is IntegrationEventKind.TIER_CHANGED]
    assert len(changed) == 1 and changed[0].tier == "growth"
    assert changed[0].reason == "plan set to growth by an operator (CLI): ticket 42"


async def test_set_tier_refuses_bad_input_and_publishes_nothing(
    invoke: Invoke, store: Store, pfx_files: dict[str, Path], fiscal_settings: FiscalSettings,
    kafka_settings: KafkaSettings, topics: Topics,
) -> None:
    await _create(invoke, pfx_files, fiscal_settings, "two@obrt.hr")
    await _create(invoke, pfx_files, fiscal_settings, "two@obrt.hr")
    before = await end_offsets(kafka_settings, topics)

    unknown = await invoke("accounts", "set-tier", "--account", "nobody@obrt.hr",
                           "--tier", "scale")
    assert unknown.exit_code == 2 and "no account 'nobody@obrt.hr'" in unknown.output
    bad = await invoke("accounts", "set-tier", "--account", "two@obrt.hr", "--tier", "gold")
    assert bad.exit_code == 2 and "'gold' is not one of" in bad.output
    too_many = await invoke("accounts", "set-tier", "--account", "two@obrt.hr",
                            "--tier", "trial")
    assert too_many.exit_code == 2 and "includes 1 connection" in too_many.output
    assert await end_offsets(kafka_settings, topics) == before
    assert {r.tier for r in await store.integrations.find()} == {"trial"}
