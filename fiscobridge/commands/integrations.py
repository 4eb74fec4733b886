"""`fiscobridge integrations create|list|show|activate|remove` — operator tools until the
portal does the same for business owners.

Status changes are integration events: published to `integrations.events` (so the
projector and a rebuild see them) and applied to the store at once by the same
projection. Without a reachable broker the commands refuse rather than let the store
and the topic diverge.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import click
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from fiscobridge.commands import db
from fiscobridge.commands.db import Refused, open_store, run
from runtime.kafka import clients
from runtime.settings import KafkaSettings
from runtime.store import IntegrationRecord, IntegrationStatus, NotFound, Store
from runtime.store.models import TIERS
from runtime.store.rebuild import publish_and_apply
from schemas.events import IntegrationEvent, IntegrationEventKind
from services.portal.web.upload import UploadRefused, check_upload

KAFKA_CONNECT_TIMEOUT_S = 20

RevokeHook = Callable[[Store, IntegrationRecord], Awaitable[str]]
REVOKE_HOOKS: list[RevokeHook] = []
"""Called on `remove` to revoke access held elsewhere (the Zoho OAuth grant, once the
connector offers it); each returns a line for the operator. Nothing unreachable is
revoked: with no hooks, removal only stops FiscoBridge from using the credentials."""


@click.group("integrations")
def integrations() -> None:
    """Create, inspect, activate and remove integrations (operator tools)."""


@asynccontextmanager
async def kafka_producer() -> AsyncIterator[AIOKafkaProducer]:
    settings = KafkaSettings()
    producer = clients.producer(settings)
    try:
        await asyncio.wait_for(producer.start(), KAFKA_CONNECT_TIMEOUT_S)
    except (KafkaError, OSError, TimeoutError) as error:
        await producer.stop()
        raise click.ClickException(
            f"Kafka at {settings.bootstrap_servers} is unreachable ({type(error).__name__}); "
            "nothing was changed. Start it with `fiscobridge kafka up` or point "
            "KAFKA_BOOTSTRAP_SERVERS at the cluster"
        ) from None
    try:
        yield producer
    finally:
        await producer.stop()


def _password(file: Path | None, env: str | None, given: str | None) -> str:
    chosen = [name for name, value in
              (("--password-file", file), ("--password-env", env), ("--password", given))
              if value is not None]
    if len(chosen) > 1:
        raise click.UsageError(f"give the PFX password one way only, not {' and '.join(chosen)}")
    if file is not None:
        return file.read_text().rstrip("\r\n")
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise Refused(f"environment variable {env} is not set")
        return value
    if given is not None:
        return given
    return str(click.prompt("PFX password", hide_input=True))


@integrations.command("create")
@click.option("--account", "email", required=True, metavar="EMAIL",
              help="owner's e-mail; the account is created if it does not exist")
@click.option("--pfx", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="the business's fiscal certificate (PKCS#12)")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="file holding the PFX password (trailing newline ignored)")
@click.option("--password-env", metavar="VAR", help="environment variable holding the password")
@click.option("--password", "password_arg", metavar="PASSWORD",
              help="the password itself: visible in `ps` and shell history, for scripts only")
@click.option("--oib", required=True, help="the business's OIB (must match the certificate)")
@click.option("--premises", required=True, help="premises code (oznaka poslovnog prostora)")
@click.option("--device", required=True, help="device code (oznaka naplatnog uredaja)")
@click.option("--operator-oib", required=True, help="OIB of the person issuing invoices")
@click.option("--not-in-vat", is_flag=True, help="the business is not in the VAT system")
@click.option("--sequence", type=click.Choice(["P", "N"]), default="P", show_default=True,
              help="numbering per premises (P) or per device (N)")
@click.option("--tier", type=click.Choice(TIERS), default="trial", show_default=True)
def create(
    email: str, pfx: Path, password_file: Path | None, password_env: str | None,
    password_arg: str | None, oib: str, premises: str, device: str, operator_oib: str,
    not_in_vat: bool, sequence: str, tier: str,
) -> None:
    """Create an integration (pending until connected) and print its webhook secret once.

    The PFX password is read from --password-file, --password-env, or a prompt.
    """
    password = _password(password_file, password_env, password_arg)
    data = pfx.read_bytes()
    fields = {
        "oib": oib, "in_vat_system": not not_in_vat, "sequence_mark": sequence,
        "premises_code": premises, "device_code": device, "operator_oib": operator_oib,
    }
    try:
        settings, certificate = check_upload(fields, data, password)
    except UploadRefused as refused:
        raise Refused(str(refused)) from None

    async def go() -> None:
        store = await open_store()
        try:
            async with kafka_producer() as producer:
                account, new_account = await store.accounts.ensure(email)
                created = await store.integrations.create(
                    account_id=account.account_id, fiscal_settings=settings, pfx=data,
                    password=password, certificate=certificate, tier=tier,
                )
                record = created.record
                event = IntegrationEvent(
                    integration_uid=record.uid, kind=IntegrationEventKind.CREATED, tier=tier,
                    reason="created by an operator (CLI)", details={"type": record.type},
                )
                try:
                    await publish_and_apply(producer, store, event, topic=db.TOPICS.events)
                except KafkaError as error:
                    raise click.ClickException(
                        f"integration {record.uid} was stored but its `created` event was not "
                        f"acknowledged by Kafka ({type(error).__name__}); it stays pending. "
                        f"Activate it with `fiscobridge integrations activate {record.uid}` "
                        "once Kafka is back"
                    ) from None
            if new_account:
                click.echo(f"created account {account.email} (no portal password yet)")
            click.echo(f"created integration {record.uid} (pending) for {account.email}")
            click.echo(f"  certificate:   {certificate.subject}, OIB {certificate.oib}, "
                       f"valid until {certificate.not_after:%Y-%m-%d}")
            click.echo(f"  webhook URL:   {record.webhook_path}")
            click.echo(f"  webhook secret: {created.webhook_secret}")
            click.echo("  (the secret is shown once; enter it in Zoho Books' webhook settings)")
        finally:
            await store.close()

    run(go())


@integrations.command("list")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice([s.value for s in IntegrationStatus]))
def list_(statuses: tuple[str, ...]) -> None:
    """All integrations, oldest first."""

    async def go() -> None:
        store = await open_store(secrets=False)
        try:
            records = await store.integrations.find(
                statuses=[IntegrationStatus(s) for s in statuses] if statuses else None
            )
            click.echo(f"{'UID':<26}{'STATUS':<10}{'TIER':<9}{'TYPE':<12}{'CREATED':<18}"
                       "THIS MONTH")
            for record in records:
                used = await store.usage.count(record.uid)
                click.echo(f"{record.uid:<26}{record.status.value:<10}{record.tier:<9}"
                           f"{record.type:<12}{record.created_at:%Y-%m-%d %H:%M} {used:>9}")
        finally:
            await store.close()

    run(go())


@integrations.command("show")
@click.argument("uid")
@click.option("--show-webhook-secret", is_flag=True, help="print the webhook secret too")
def show(uid: str, show_webhook_secret: bool) -> None:
    """One integration: settings, certificate, usage (never secrets unless asked)."""

    async def go() -> None:
        store = await open_store(secrets=show_webhook_secret)
        try:
            record = await _get(store, uid)
            owner = await store.accounts.owner_email(record.account_id)
            lines = [
                ("uid", record.uid),
                ("account", owner or record.account_id),
                ("type", record.type),
                ("status", record.status.value
                 + (f" ({record.status_reason})" if record.status_reason else "")),
                ("tier", record.tier),
                ("created", f"{record.created_at:%Y-%m-%d %H:%M:%S %Z}"),
                ("fiscal profile", record.fiscal_profile),
                *((f"  {k}", str(v)) for k, v in sorted(record.fiscal_settings.items())),
                ("zoho organization", record.zoho_organization_id or "not connected"),
                ("zoho api domain", record.zoho_api_domain or "-"),
                ("webhook URL", record.webhook_path),
            ]
            try:
                cert = await store.integrations.certificate_info(uid)
                lines += [
                    ("certificate", cert.subject),
                    ("  OIB", cert.oib),
                    ("  valid", f"{cert.not_before:%Y-%m-%d} .. {cert.not_after:%Y-%m-%d}"),
                    ("  sha256", cert.fingerprint_sha256),
                ]
            except NotFound:
                lines.append(("certificate", "none"))
            counts = await store.journal.counts(uid)
            lines += [
                ("fiscalized this month", str(await store.usage.count(uid))),
                ("journal", ", ".join(f"{s.value} {n}" for s, n in sorted(counts.items()))
                 or "empty"),
            ]
            if show_webhook_secret:
                lines.append(("webhook secret", await store.integrations.webhook_secret(uid)))
            for label, value in lines:
                click.echo(f"{label + ':':<24}{value}")
        finally:
            await store.close()

    run(go())


@integrations.command("writeback-fields")
@click.argument("uid")
@click.argument("mapping", nargs=-1, metavar="[ROLE=CUSTOMFIELD_ID]...")
def writeback_fields(uid: str, mapping: tuple[str, ...]) -> None:
    """Show, or set, which Zoho custom field receives each fiscal value.

    Roles: fiscal_number, zki, jir, qr_url for invoice custom fields, and the same
    prefixed `creditnote.` for credit note custom fields (a credit note's storno).
    Setting replaces the whole mapping; unmapped roles are not written. Setting also
    announces it on integrations.events, and the write-back stage then writes back what
    waited for a mapping ("no custom fields mapped").
    """
    from connectors.zoho.writeback import ALL_ROLES, FieldMap
    from runtime.writeback_mapping import set_mapping

    pairs: dict[str, str] = {}
    for item in mapping:
        role, sep, field_id = item.partition("=")
        if not sep or not field_id.strip():
            raise click.BadParameter(f"{item!r} is not ROLE=CUSTOMFIELD_ID", param_hint="MAPPING")
        pairs[role.strip()] = field_id.strip()
    try:
        FieldMap(pairs)  # the roles the write-back stage knows, nothing else
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="MAPPING") from None

    async def go() -> None:
        store = await open_store(secrets=False)
        try:
            await _get(store, uid)
            if pairs:
                async with kafka_producer() as producer:  # unreachable: nothing is changed
                    async def announce(event: IntegrationEvent) -> object:
                        return await publish_and_apply(producer, store, event,
                                                       topic=db.TOPICS.events)

                    try:
                        await set_mapping(store.integrations, announce, uid, pairs,
                                          by="an operator (CLI)")
                    except (KafkaError, OSError, TimeoutError) as error:
                        raise click.ClickException(
                            f"the mapping was saved but not announced ({type(error).__name__}):"
                            " write-backs waiting for it are written once it is announced;"
                            " run this command again"
                        ) from None
            record = await _get(store, uid)
            for role in ALL_ROLES:
                click.echo(f"{role + ':':<27}{record.writeback_fields.get(role, '-')}")
        finally:
            await store.close()

    run(go())


@integrations.command("read-options")
@click.argument("uid")
@click.option("--buyer-tax-field", metavar="CF_NAME",
              help="the contact custom field holding the buyer's tax number (OIB), by its "
              "api_name as Zoho shows it, e.g. cf_oib; '-' to read only tax_reg_no, "
              "vat_reg_no and gst_no")
@click.option("--payment-mode", "payment_modes", multiple=True, metavar="MODE=METHOD",
              help="map a Zoho payment_mode (cash, check, creditcard, banktransfer, "
              "bankremittance, autotransaction, others, or one the business added) to a "
              "payment method (cash, card, bank_transfer, cheque, other); METHOD '-' drops "
              "the entry (back to the built-in table). Repeatable")
@click.option("--default-payment-method", metavar="METHOD",
              help="the payment method of an invoice without payments")
@click.option("--base-currency", metavar="CODE",
              help="the organization's base currency (a Croatian organization's is EUR)")
@click.option("--reset", is_flag=True, help="back to the defaults (before other options)")
def read_options(
    uid: str, buyer_tax_field: str | None, payment_modes: tuple[str, ...],
    default_payment_method: str | None, base_currency: str | None, reset: bool,
) -> None:
    """Show, or change, how the integration's Zoho invoices are read.

    Poller and webhooks both read with these options, so an invoice maps the same
    whichever way it arrives. Options not given keep their value. Invalid input is
    refused and nothing is changed. Takes effect at the next poll, and for webhooks
    within the ingest cache time (30 s by default); documents refused before they were
    signed are read again with them.
    """
    from connectors.zoho.mapping import MappingOptions, payment_mode_key

    changes = any(v is not None for v in (buyer_tax_field, default_payment_method,
                                          base_currency)) or bool(payment_modes) or reset
    mode_changes: dict[str, str | None] = {}
    for item in payment_modes:
        mode, sep, method = item.partition("=")
        if not sep or not mode.strip() or not method.strip():
            raise click.BadParameter(f"{item!r} is not MODE=METHOD", param_hint="--payment-mode")
        method = method.strip()
        mode_changes[payment_mode_key(mode.strip())] = None if method == "-" else method

    async def go() -> None:
        store = await open_store(secrets=False)
        try:
            record = await _get(store, uid)
            if changes:
                stored = {} if reset else dict(record.zoho_read_options)
                if buyer_tax_field is not None:
                    stored["buyer_tax_field"] = None if buyer_tax_field == "-" \
                        else buyer_tax_field.strip()
                if default_payment_method is not None:
                    stored["default_payment_method"] = default_payment_method.strip()
                if base_currency is not None:
                    stored["base_currency"] = base_currency.strip().upper()
                if mode_changes:
                    modes = dict(stored.get("payment_modes") or {})
                    for mode, method in mode_changes.items():
                        if method is None:
                            modes.pop(mode, None)
                        else:
                            modes[mode] = method
                    stored["payment_modes"] = modes
                try:
                    options = MappingOptions.from_stored(stored)
                except ValueError as error:
                    raise Refused(f"{error}; nothing was changed") from None
                await store.integrations.set_zoho_read_options(uid, options.stored())
                record = await _get(store, uid)
                event = IntegrationEvent(
                    integration_uid=uid, kind=IntegrationEventKind.SETTINGS_CHANGED,
                    reason="read options set by an operator (CLI)",
                    details={"zoho_read_options": options.stored()},
                )
                try:
                    async with kafka_producer() as producer:
                        await publish_and_apply(producer, store, event, topic=db.TOPICS.events)
                except KafkaError as error:
                    click.echo(
                        f"the options were saved, but Kafka did not acknowledge the change "
                        f"({type(error).__name__}): invoices refused before they were signed "
                        "are read again with them once it is announced; run the command "
                        "again when Kafka is back", err=True)
            try:
                options = MappingOptions.from_stored(record.zoho_read_options)
            except ValueError as error:
                raise Refused(
                    f"the stored read options are not valid ({error}); set them again, "
                    "e.g. with --reset"
                ) from None
            shown = options.stored(defaults=True)
            modes = shown.pop("payment_modes")
            for key, value in shown.items():
                click.echo(f"{key + ':':<24}{value if value is not None else '-'}")
            click.echo(f"{'payment_modes:':<24}"
                       + (", ".join(f"{m}={v}" for m, v in modes.items()) or "built-in table"))
        finally:
            await store.close()

    run(go())


@integrations.command("activate")
@click.argument("uid")
def activate(uid: str) -> None:
    """Mark active without connecting Zoho (development and demos)."""
    _change_status(uid, IntegrationEventKind.CONNECTED,
                   "activated by an operator without Zoho (CLI)")


@integrations.command("remove")
@click.argument("uid")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def remove(uid: str, yes: bool) -> None:
    """Mark removed: no more fiscalization; the fiscal journal is kept."""
    if not yes:
        click.confirm(
            f"Remove integration {uid}? Invoices stop being fiscalized; its fiscal journal "
            "is kept.", abort=True,
        )
    _change_status(uid, IntegrationEventKind.REMOVED, "removed by an operator (CLI)")


def _change_status(uid: str, kind: IntegrationEventKind, reason: str) -> None:
    async def go() -> None:
        store = await open_store(secrets=False)
        try:
            record = await _get(store, uid)
            if record.status is IntegrationStatus.REMOVED:
                raise Refused(f"integration {uid} is removed; that is final")
            async with kafka_producer() as producer:
                event = IntegrationEvent(integration_uid=uid, kind=kind, reason=reason)
                await publish_and_apply(producer, store, event, topic=db.TOPICS.events)
            after = await _get(store, uid)
            click.echo(f"integration {uid}: {record.status.value} -> {after.status.value}")
            if kind is IntegrationEventKind.REMOVED:
                for hook in REVOKE_HOOKS:
                    click.echo(await hook(store, after))
                if not REVOKE_HOOKS:
                    click.echo("note: access granted in Zoho Books is not revoked from here; "
                               "the owner can revoke it under Zoho's connected apps")
        finally:
            await store.close()

    run(go())


async def _get(store: Store, uid: str) -> IntegrationRecord:
    record = await store.integrations.get(uid)
    if record is None:
        raise click.ClickException(f"no integration {uid!r}")
    return record
