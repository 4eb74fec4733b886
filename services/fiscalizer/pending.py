"""Table writes that wait for the outputs they stand for.

An entry saying "signed" must not reach the changelog before its InvoiceSigned reaches
`invoices.signed`: replayed after a crash in between, the entry would make the invoice
a duplicate of a message nobody received, and the invoice would be lost. So a batch's
writes are staged here and written to the tables only once the batch's outputs are
acked.

Staged writes are visible at once to every agent of the worker: the reporter can answer
an InvoiceSigned (a retry, a status) before the batch that signed it has settled, and
that answer must see the invoice as signed. Tables are co-partitioned with every input,
so one worker holds all the state of the invoices it handles.

When two batches stage the same key, the later write wins whichever batch settles
first: a batch writes a key to its table only if its write is still the latest staged.

A durable write (`set(..., durable=True)`) is the other order, for what must never be
decided twice: it reaches the changelog (acked) before the batch's outputs are sent,
and is written again with the rest when the batch settles. A fiscal number is one: a
crash between its output and the changelog would otherwise let it be drawn again, for
another invoice. The signature made under it goes with it (the numbered entry), so the
delivery read again after such a crash sends that signature again rather than signing
the invoice a second time; a retry's signature, made under the number it carries, is
written so too, for the retry read again.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Table = MutableMapping[str, Any]
Writer = Callable[[Any, Table, str, Any], None]  # origin, table, key, value


@dataclass(frozen=True)
class _Write:
    origin: Any  # what the write came from (a faust event: its changelog partition)
    table: Table
    key: str
    value: Any
    seq: int


class Pending:
    """Staged writes of every batch in flight, read through before the tables."""

    def __init__(self) -> None:
        self._latest: dict[tuple[int, str], _Write] = {}
        self._seq = itertools.count()

    def get(self, table: Table, key: str, default: Any = None) -> Any:
        staged = self._latest.get((id(table), key))
        if staged is not None:
            return staged.value
        value = table.get(key)
        return default if value is None else value

    def __len__(self) -> int:
        return len(self._latest)

    def batch(self) -> Batch:
        return Batch(self)

    def _stage(self, origin: Any, table: Table, key: str, value: Any) -> _Write:
        write = _Write(origin, table, key, value, next(self._seq))
        self._latest[(id(table), key)] = write
        return write

    def _settle(self, write: _Write, writer: Writer) -> None:
        slot = (id(write.table), write.key)
        if self._latest.get(slot) is write:
            writer(write.origin, write.table, write.key, write.value)
            del self._latest[slot]
        # Otherwise a later write of the key is staged (or already settled): it wins.


@dataclass
class Batch:
    """One batch's writes: each event's are staged when its handler succeeds, and all
    are settled (written to their tables) once the batch's outputs are acked."""

    pending: Pending
    _event: list[tuple[Table, str, Any, bool]] = field(default_factory=list)
    _staged: list[_Write] = field(default_factory=list)
    _durable: list[_Write] = field(default_factory=list)

    def get(self, table: Table, key: str, default: Any = None) -> Any:
        for written, k, value, _ in reversed(self._event):
            if written is table and k == key:
                return value
        return self.pending.get(table, key, default)

    def set(self, table: Table, key: str, value: Any, *, durable: bool = False) -> None:
        self._event.append((table, key, value, durable))

    def commit_event(self, origin: Any) -> None:
        """The event's handler succeeded: its writes become visible to everyone."""
        for table, key, value, durable in self._event:
            write = self.pending._stage(origin, table, key, value)
            self._staged.append(write)
            if durable:
                self._durable.append(write)
        self._event.clear()

    def take_durable(self) -> list[tuple[Any, Table, str, Any]]:
        """The durable writes staged since the last call: (origin, table, key, value),
        to be acked by the changelog before the outputs leave."""
        taken = [(w.origin, w.table, w.key, w.value) for w in self._durable]
        self._durable.clear()
        return taken

    def discard_event(self) -> None:
        """The event's handler failed (it goes to the DLQ): its writes never happened."""
        self._event.clear()

    def settle(self, writer: Writer) -> None:
        for write in self._staged:
            self.pending._settle(write, writer)
        self._staged.clear()
