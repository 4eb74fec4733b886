"""Which fiscalizer entries expire, and where their deletions go."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from services.fiscalizer.retention import expired, partition_of, sweep
from services.fiscalizer.rules import Entry, Phase

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=90)


def _entry(phase: Phase, age_days: float) -> dict[str, Any]:
    first = NOW - timedelta(days=age_days)
    return Entry(phase, "v1", 1, first).to_json()


def test_partition_is_the_producers_partition_of_the_uid() -> None:
    partitioner = DefaultPartitioner()
    for _ in range(200):
        uid = uuid.uuid4().hex
        assert partition_of(uid, 12) == partitioner(uid.encode(), list(range(12)), None)


def test_only_fiscalized_and_only_seen_entries_past_the_retention_expire() -> None:
    for phase in (Phase.FISCALIZED, Phase.SEEN):
        assert expired("u:1", _entry(phase, 91), CUTOFF), phase
        assert not expired("u:1", _entry(phase, 89), CUTOFF), phase
    for phase in (Phase.NUMBERED, Phase.SIGNED, Phase.REJECTED, Phase.FAILED):
        assert not expired("u:1", _entry(phase, 400), CUTOFF), phase


def test_sequences_and_counters_never_expire() -> None:
    assert not expired("seq|u|P1||2025", 17, CUTOFF)
    assert not expired("u:2025-01", 3, CUTOFF)
    assert not expired("seq|u|P1||2025", _entry(Phase.FISCALIZED, 400), CUTOFF)  # no ':'


async def test_a_sweep_deletes_only_expired_entries_of_the_partitions_held() -> None:
    uids = [uuid.uuid4().hex for _ in range(24)]
    held = {partition_of(u, 12) for u in uids[:12]}
    table: dict[str, Any] = {}
    for uid in uids:
        table[f"{uid}:old"] = _entry(Phase.FISCALIZED, 120)
        table[f"{uid}:new"] = _entry(Phase.FISCALIZED, 10)
        table[f"{uid}:refused"] = _entry(Phase.REJECTED, 120)
        table[f"seq|{uid}|P1||2025"] = 41
    staged = {f"{uids[0]}:old": _entry(Phase.FISCALIZED, 1)}  # touched again, not settled

    result = await sweep(table, lambda k: staged.get(k, table.get(k)), lambda: held, 12, CUTOFF)

    gone = {f"{u}:old" for u in uids if partition_of(u, 12) in held} - set(staged)
    assert gone and result.deleted == len(gone)
    assert set(table) == {
        k for u in uids for k in (f"{u}:old", f"{u}:new", f"{u}:refused", f"seq|{u}|P1||2025")
    } - gone
    assert result.looked_at == 4 * len(uids)
