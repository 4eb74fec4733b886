"""Bounded fiscalizer state: an invoice's entry is kept only while a duplicate of it can
still arrive.

A fiscalized invoice's entry turns later deliveries (webhook + poll, Zoho resending,
replays) into `duplicate`; after `state_retention_days` (90) from its first signature
none is expected any more, and the entry is deleted: from the local store and, with a
tombstone, from the changelog, so a restart does not bring it back and compaction
frees it. Fiscalized entries expire, and so do entries of invoices only ever seen
unpaid by an integration that fiscalizes paid ones (an invoice paid after that is
issued when it is seen paid). Kept for good: entries still in flight
(signed), rejected or failed ones (an operator acts on them, and a failed invoice's
number must be reused by its next delivery), the fiscal-number sequences (a sequence
forgotten would hand out its numbers again) and the licence counters.

A deletion is written to the changelog partition the entry belongs to, the partition of
its integration uid under the producers' partitioner, and only for partitions this
worker holds now: another worker's entries are that worker's to keep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka.partitioner import murmur2

from runtime.faust_adapter import FaustWorker
from schemas.topics import INVOICES_RECEIVED

log = logging.getLogger("fiscobridge.fiscalizer.retention")

EXPIRING_PHASES = ("fiscalized", "seen")
CHUNK = 2000  # entries looked at between two yields to the event loop


def partition_of(uid: str, partitions: int) -> int:
    """The partition of records keyed `uid`: what aiokafka's (and Kafka's Java) default
    partitioner picks, so the partition of the entry's changelog too."""
    return (murmur2(uid.encode()) & 0x7FFFFFFF) % partitions


def expired(key: str, value: Any, cutoff: datetime) -> bool:
    """Whether `key`'s entry may go: a fiscalized invoice first signed (or one only
    seen) before `cutoff`. Anything else (sequences, counters, entries in flight or
    refused) never expires."""
    if ":" not in key or not isinstance(value, dict):
        return False
    if value.get("phase") not in EXPIRING_PHASES or not value.get("first_attempt_at"):
        return False
    return datetime.fromisoformat(value["first_attempt_at"]) < cutoff


@dataclass
class SweepResult:
    looked_at: int = 0
    deleted: int = 0
    seconds: float = 0.0


async def sweep(
    table: MutableMapping[str, Any],
    read: Callable[[str], Any],
    held: Callable[[], Collection[int]],
    partitions: int,
    cutoff: datetime,
) -> SweepResult:
    """Delete the expired entries of `table` in the partitions `held()` returns (asked
    again for every chunk: a rebalance may take some away meanwhile). `read(key)` is the
    entry as the worker sees it (writes of a batch not yet settled included)."""
    result = SweepResult()
    started = time.monotonic()
    keys = list(table.keys())
    for start in range(0, len(keys), CHUNK):
        mine = set(held())
        for key in keys[start:start + CHUNK]:
            result.looked_at += 1
            partition = partition_of(key.split(":", 1)[0], partitions)
            if partition in mine and expired(key, read(key), cutoff) and key in table:
                FaustWorker.delete(table, key, partition, INVOICES_RECEIVED.name)
                result.deleted += 1
        await asyncio.sleep(0)
    result.seconds = time.monotonic() - started
    if result.deleted:
        log.info("expired invoice entries deleted",
                 extra={"deleted": result.deleted, "looked_at": result.looked_at})
    return result
