"""Faults the sandbox CIS injects: latency, s006, HTTP 500, hangs, lost answers, outages.

Set at start and changed at run time (`POST /_sandbox/faults`); every probability is
per request. A hang stands for a service that stops answering; a lost answer for one
that accepted the invoice (it is in the ledger) but whose answer never arrives, the
case where a client's resend reports an invoice twice.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

Probability = float


class Faults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(default=0, ge=0, description="added to every SOAP answer")
    jitter_ms: float = Field(default=0, ge=0, description="plus uniform 0..jitter_ms")
    s006: Probability = Field(default=0, ge=0, le=1, description="answer s006 (system error)")
    http500: Probability = Field(default=0, ge=0, le=1, description="bare HTTP 500, no SOAP")
    hang: Probability = Field(default=0, ge=0, le=1, description="no answer for hang_seconds")
    lost_answer: Probability = Field(
        default=0, ge=0, le=1, description="accept the invoice, then hang instead of answering"
    )
    hang_seconds: float = Field(default=60, gt=0, le=3600)
    outage_start: AwareDatetime | None = None
    outage_end: AwareDatetime | None = None
    outage_mode: Literal["refuse", "503"] = Field(
        default="503", description="refuse: connections refused; 503: HTTP 503 answers"
    )

    @model_validator(mode="after")
    def _outage_has_an_end(self) -> Faults:
        # An open-ended "refuse" outage would also lock out the control endpoint.
        if self.outage_start is not None and self.outage_end is None:
            raise ValueError("outage_start needs outage_end (or give outage_seconds)")
        if self.outage_start and self.outage_end and self.outage_end <= self.outage_start:
            raise ValueError("outage_end must be after outage_start")
        return self

    def updated(self, changes: dict[str, Any], now: datetime) -> Faults:
        """A copy with `changes` applied; `outage_seconds: N` means from now for N seconds.

        Raises pydantic.ValidationError (a ValueError) and changes nothing on bad input.
        """
        changes = dict(changes)
        seconds = changes.pop("outage_seconds", None)
        if seconds is not None:
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
                raise ValueError("outage_seconds must be a positive number")
            changes["outage_start"] = now
            changes["outage_end"] = now + timedelta(seconds=seconds)
        elif "outage_end" in changes and "outage_start" not in changes:
            changes["outage_start"] = now
        return Faults.model_validate({**self.model_dump(), **changes})

    def outage_active(self, now: datetime) -> bool:
        return (
            self.outage_start is not None
            and self.outage_end is not None
            and self.outage_start <= now < self.outage_end
        )

    def refusing(self, now: datetime) -> bool:
        return self.outage_mode == "refuse" and self.outage_active(now)

    def latency_seconds(self, rng: random.Random) -> float:
        jitter = rng.uniform(0, self.jitter_ms) if self.jitter_ms else 0.0
        return (self.latency_ms + jitter) / 1000


def roll(rng: random.Random, probability: Probability) -> bool:
    return probability > 0 and rng.random() < probability


def utcnow() -> datetime:
    return datetime.now(UTC)
