"""When to try a transient failure again: always, after a capped delay (a due invoice
is never given up; hr-fiscal-record.md, "Late delivery")."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Backoff:
    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=5)

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """Exponential in the attempt number, capped, with "equal jitter".

        Half the delay is fixed so retries never pile up at zero; the other half is
        random so that a burst of s006 answers does not come back as one burst.
        """
        # The exponent stops growing once the cap is reached: retries never end, so the
        # attempt number has no bound (2**5000 seconds overflows a timedelta).
        steps = max(0, attempt - 1)
        exp = self.cap if steps >= 64 else min(self.cap, self.base * (2 ** steps))
        half = exp / 2
        return half + half * (rng or random).random()
