"""The license tiers: one enum, in the order of rank (the lowest first).

Everything that names a tier derives from this: the `tier` of an IntegrationEvent, the
store's `TIERS` (its migration CHECK is tested against it), the CLI's choices and the
table of limits, poll intervals and connections in runtime/licensing.py.
"""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    TRIAL = "trial"
    STARTER = "starter"
    GROWTH = "growth"
    SCALE = "scale"

    @property
    def label(self) -> str:
        return self.value.title()

    @property
    def rank(self) -> int:
        return list(Tier).index(self)


TIERS: tuple[str, ...] = tuple(tier.value for tier in Tier)
