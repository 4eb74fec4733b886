"""When a subsequent delivery becomes late (hr-fiscal-record.md, "Late delivery").

An invoice CIS could not be reached for is still issued, and must be delivered with
`NakDost=true` within two working days of its issue. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from fiscal.hr_cis.formats import ZAGREB


@dataclass(frozen=True)
class LateDeadline:
    working_days: int = 2
    # Public holidays (Croatian dates) that are not working days; Saturdays and Sundays
    # never are.
    holidays: frozenset[date] = field(default_factory=frozenset)
    # Instead of working days, a fixed time after issue (tests, demonstrations).
    fixed: timedelta | None = None

    @classmethod
    def of(cls, working_days: int, holidays: Iterable[date] = (),
           fixed_seconds: float | None = None) -> LateDeadline:
        return cls(working_days, frozenset(holidays),
                   timedelta(seconds=fixed_seconds) if fixed_seconds is not None else None)

    def working(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def due_by(self, issued_at: datetime) -> datetime:
        """The instant the delivery of an invoice issued at `issued_at` becomes late:
        the same local time `working_days` working days later (days off not counted)."""
        if self.fixed is not None:
            return issued_at + self.fixed
        local = issued_at.astimezone(ZAGREB)
        day, left = local.date(), self.working_days
        while left:
            day += timedelta(days=1)
            if self.working(day):
                left -= 1
        return datetime.combine(day, local.timetz()).astimezone(issued_at.tzinfo)

    def late(self, issued_at: datetime, now: datetime) -> bool:
        return now >= self.due_by(issued_at)
