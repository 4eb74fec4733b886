"""`fiscobridge accounts`: operator tools for customer accounts (plans).

A tier change is an integration event (`tier_changed`) per integration of the account,
published to `integrations.events` (the fiscalizer and the poller follow it from there)
and applied to the store, like every other change an operator makes.
"""

from __future__ import annotations

import click
from aiokafka.errors import KafkaError

from fiscobridge.commands import db
from fiscobridge.commands.db import Refused, open_store, run
from fiscobridge.commands.integrations import kafka_producer
from runtime.licensing import LABELS, TIERS, TierSettings, account_tier
from runtime.store import IntegrationStatus
from runtime.store.rebuild import publish_and_apply
from schemas.events import IntegrationEvent, IntegrationEventKind


@click.group("accounts")
def accounts() -> None:
    """Customer accounts: plans (operator tools)."""


@accounts.command("set-tier")
@click.option("--account", "email", required=True, metavar="EMAIL",
              help="the account's e-mail address (as it signs in to the portal)")
@click.option("--tier", required=True, type=click.Choice(TIERS),
              help="the plan: its monthly limit, poll interval and connections")
@click.option("--reason", default="", help="recorded with the change (e.g. the ticket)")
def set_tier(email: str, tier: str, reason: str) -> None:
    """Put every integration of an account on TIER (removed ones are left as they are)."""

    async def go() -> None:
        store = await open_store(secrets=False)
        try:
            account = await store.accounts.get(email)
            if account is None:
                raise Refused(f"no account {email!r}; nothing was changed")
            records = await store.integrations.find(account_id=account.account_id)
            live = [r for r in records if r.status is not IntegrationStatus.REMOVED]
            before = account_tier([r.tier for r in records])
            allowed = TierSettings().connections(tier)
            if allowed is not None and len(live) > allowed:
                raise Refused(
                    f"the {LABELS[tier]} plan includes {allowed} connection"
                    f"{'' if allowed == 1 else 's'} and {email} has {len(live)}; remove "
                    "integrations first. Nothing was changed"
                )
            if not live:
                raise Refused(
                    f"{email} has no integration to put on {LABELS[tier]} (a new one gets "
                    "the portal's default plan); nothing was changed"
                )
            why = f"plan set to {tier} by an operator (CLI)" + (f": {reason}" if reason else "")
            changed: list[str] = []
            async with kafka_producer() as producer:
                for record in live:
                    event = IntegrationEvent(
                        integration_uid=record.uid, kind=IntegrationEventKind.TIER_CHANGED,
                        tier=tier,  # one of TIERS: click.Choice checked it
                        reason=why,
                    )
                    try:
                        await publish_and_apply(producer, store, event, topic=db.TOPICS.events)
                    except KafkaError as error:
                        done = ", ".join(changed) or "none"
                        raise click.ClickException(
                            f"Kafka did not acknowledge the change of {record.uid} "
                            f"({type(error).__name__}); changed so far: {done}. Run the "
                            "command again: integrations already on the plan stay on it"
                        ) from None
                    changed.append(record.uid)
            click.echo(f"account {email}: {LABELS.get(before, before)} -> {LABELS[tier]}")
            for uid in changed:
                click.echo(f"  integration {uid}: tier {tier}")
        finally:
            await store.close()

    run(go())
