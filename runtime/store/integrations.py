"""Integrations: one business's link between an accounting system and a tax authority.

The store keeps fiscal settings as the profile's JSON and does not interpret them, so a
new tax-authority profile needs no store change; the profile validates them when used.
Status is not written here: it changes only through integration events (projection).
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from pydantic import BaseModel
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError

from runtime.store.models import (
    TIERS,
    Certificate,
    Integration,
    IntegrationStatus,
    PollState,
    secret_context,
)
from runtime.store.repository import InvalidInput, NotFound, Repository, new_id

UID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
INTEGRATION_TYPES = ("zoho_books",)
# Zoho accepts 12-50 alphanumerics; 32 gives ~190 bits.
WEBHOOK_SECRET_LENGTH = 32
_ALPHANUMERIC = string.ascii_letters + string.digits


INTEGRATION_NAME_LENGTH = 100


def check_name(name: str | None) -> str | None:
    """An integration's name, trimmed; blank is no name."""
    name = " ".join((name or "").split())
    if len(name) > INTEGRATION_NAME_LENGTH:
        raise InvalidInput(f"a name is at most {INTEGRATION_NAME_LENGTH} characters")
    return name or None


def new_webhook_secret() -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(WEBHOOK_SECRET_LENGTH))


class CertificateFacts(Protocol):
    """What the store keeps in clear about a certificate (e.g. a FiscalCertificate)."""

    @property
    def subject(self) -> str: ...
    @property
    def issuer(self) -> str: ...
    @property
    def serial(self) -> Any: ...
    @property
    def oib(self) -> str: ...
    @property
    def fingerprint_sha256(self) -> str: ...
    @property
    def not_before(self) -> datetime: ...
    @property
    def not_after(self) -> datetime: ...


@dataclass(frozen=True)
class WebhookSecrets:
    current: str = field(repr=False)
    previous: str | None = field(repr=False)
    previous_until: datetime | None
    shown_at: datetime | None

    def accepted(self, now: datetime) -> list[str]:
        """The secrets a webhook may be signed with at `now`."""
        if self.previous and self.previous_until is not None and now < self.previous_until:
            return [self.current, self.previous]
        return [self.current]


@dataclass(frozen=True)
class IntegrationRecord:
    uid: str
    account_id: str
    type: str
    status: IntegrationStatus
    tier: str
    created_at: datetime
    fiscal_profile: str
    fiscal_settings: dict[str, Any] = field(hash=False)
    zoho_organization_id: str | None
    zoho_accounts_server: str | None
    zoho_api_domain: str | None
    status_reason: str | None
    status_changed_at: datetime | None
    starts_at: datetime | None = None
    starts_at_chosen: bool = False
    name: str | None = None
    # role -> Zoho invoice customfield_id (connectors/zoho/writeback.py); empty: unmapped
    writeback_fields: dict[str, str] = field(default_factory=dict, hash=False)
    # How its Zoho documents are read (connectors.zoho.mapping.MappingOptions.from_stored);
    # empty: the defaults
    zoho_read_options: dict[str, Any] = field(default_factory=dict, hash=False)
    webhook_seen_at: datetime | None = None  # ingest's last accepted webhook (to the minute)

    @property
    def label(self) -> str:
        """The customer's name for it, else its uid."""
        return self.name or self.uid

    @property
    def webhook_path(self) -> str:
        return f"/webhook/zoho/{self.uid}"


@dataclass(frozen=True)
class CertificateInfo:
    id: str
    integration_uid: str
    subject: str
    issuer: str
    serial: str
    oib: str
    fingerprint_sha256: str
    not_before: datetime
    not_after: datetime
    uploaded_at: datetime
    is_current: bool
    replaced_at: datetime | None


class OrganizationTaken(InvalidInput):
    """The Zoho organization is held by another integration; nothing was changed."""

    def __init__(self, organization_id: str, holder: IntegrationRecord) -> None:
        super().__init__(
            f"Zoho organization {organization_id} is held by integration {holder.uid}"
        )
        self.organization_id = organization_id
        self.holder = holder


@dataclass(frozen=True)
class CreatedIntegration:
    record: IntegrationRecord
    webhook_secret: str = field(repr=False)


class Integrations(Repository):
    async def create(
        self,
        *,
        account_id: str,
        fiscal_settings: Mapping[str, Any] | BaseModel,
        pfx: bytes,
        password: str,
        certificate: CertificateFacts,
        tier: str = "trial",
        type: str = "zoho_books",
        fiscal_profile: str = "hr-cis",
        uid: str | None = None,
        name: str | None = None,
    ) -> CreatedIntegration:
        """A new integration in status pending, with its certificate and webhook secret.

        The caller validates the certificate (the profile knows how); the store only
        keeps it, encrypted.
        """
        uid = uid or new_id()
        if not UID_PATTERN.match(uid):
            raise InvalidInput(f"integration uid {uid!r} does not match {UID_PATTERN.pattern}")
        if tier not in TIERS:
            raise InvalidInput(f"tier {tier!r} is not one of {', '.join(TIERS)}")
        if type not in INTEGRATION_TYPES:
            raise InvalidInput(f"integration type {type!r} is not one of {INTEGRATION_TYPES}")
        settings = (
            fiscal_settings.model_dump(mode="json")
            if isinstance(fiscal_settings, BaseModel)
            else dict(fiscal_settings)
        )
        secret = new_webhook_secret()
        now = datetime.now(UTC)
        row = Integration(
            uid=uid,
            account_id=account_id,
            type=type,
            status=IntegrationStatus.PENDING.value,
            tier=tier,
            created_at=now,
            fiscal_profile=fiscal_profile,
            fiscal_settings=settings,
            name=check_name(name),
        )
        row.webhook_secret = self._vault.encrypt(
            secret.encode(), secret_context(row, "webhook_secret")
        )
        async with self._tx() as session:
            session.add(row)
            await session.flush()
            session.add(self._certificate_row(uid, pfx, password, certificate, now))
            session.add(PollState(integration_uid=uid))
        return CreatedIntegration(_record(row), secret)

    async def replace_certificate(
        self, uid: str, *, pfx: bytes, password: str, certificate: CertificateFacts
    ) -> CertificateInfo:
        """Make a new certificate current; the old one stays as history."""
        now = datetime.now(UTC)
        async with self._tx() as session:
            await self._require(session, uid)
            await session.execute(
                update(Certificate)
                .where(Certificate.integration_uid == uid, Certificate.is_current)
                .values(is_current=False, replaced_at=now)
            )
            row = self._certificate_row(uid, pfx, password, certificate, now)
            session.add(row)
        return _certificate_info(row)

    async def set_zoho_connection(
        self, uid: str, *, organization_id: str, accounts_server: str, api_domain: str
    ) -> None:
        """Connect `uid` to the organization, claiming it; `OrganizationTaken` when
        another integration that is not removed holds it (the unique index decides, so
        two connections racing for one organization cannot both win)."""
        try:
            async with self._tx() as session:
                row = await self._require(session, uid)
                if row.status == IntegrationStatus.REMOVED.value:
                    raise InvalidInput(f"integration {uid!r} is removed")
                row.zoho_organization_id = organization_id
                row.zoho_organization_claim = organization_id
                row.zoho_accounts_server = accounts_server
                row.zoho_api_domain = api_domain
        except IntegrityError:
            holder = await self.holder_of(organization_id)
            record = await self.get(holder) if holder else None
            if record is None:  # released meanwhile: the caller may simply try again
                raise InvalidInput(
                    f"Zoho organization {organization_id} was being connected elsewhere"
                ) from None
            raise OrganizationTaken(organization_id, record) from None

    async def rename(self, uid: str, name: str | None) -> str | None:
        name = check_name(name)
        async with self._tx() as session:
            row = await self._require(session, uid)
            row.name = name
        return name

    async def set_writeback_fields(self, uid: str, fields: Mapping[str, str]) -> None:
        """Which Zoho invoice custom field receives each fiscal value (role ->
        customfield_id). Roles are checked against connectors.zoho.writeback.ROLES by
        the caller (FieldMap); ids are Zoho's, opaque here."""
        async with self._tx() as session:
            row = await self._require(session, uid)
            row.writeback_fields = {str(k): str(v) for k, v in fields.items() if v}

    async def set_fiscal_settings(self, uid: str, settings: Mapping[str, Any] | BaseModel) -> None:
        """Replace the integration's fiscal settings (checked by the caller against its
        authority's settings model, as at creation)."""
        values = (settings.model_dump(mode="json") if isinstance(settings, BaseModel)
                  else dict(settings))
        async with self._tx() as session:
            row = await self._require(session, uid)
            row.fiscal_settings = values

    async def set_zoho_read_options(self, uid: str, options: Mapping[str, Any]) -> None:
        """How the integration's Zoho documents are read (the JSON of
        connectors.zoho.mapping.MappingOptions, checked by the caller); empty: defaults."""
        async with self._tx() as session:
            row = await self._require(session, uid)
            row.zoho_read_options = dict(options) or None

    async def webhook_seen(
        self, uid: str, at: datetime, *, every: timedelta = timedelta(minutes=1)
    ) -> bool:
        """Record that a webhook was accepted at `at`, unless one was recorded less than
        `every` before (one statement: concurrent ingest instances write at most once per
        `every` between them). False when nothing was written."""
        statement = (
            update(Integration)
            .where(Integration.uid == uid)
            .where(
                (Integration.webhook_seen_at.is_(None))
                | (Integration.webhook_seen_at <= at - every)
            )
            .values(webhook_seen_at=at)
        )
        async with self._tx() as session:
            result = cast(CursorResult[Any], await session.execute(statement))
            return bool(result.rowcount)

    async def holder_of(self, organization_id: str) -> str | None:
        """The integration holding a Zoho organization, if any."""
        async with self._tx() as session:
            result: str | None = await session.scalar(
                select(Integration.uid).where(
                    Integration.zoho_organization_claim == organization_id
                )
            )
            return result

    async def choose_start(self, uid: str, starts_at: datetime, *, now: datetime) -> None:
        """The customer's explicit start, earlier than the one the integration has.

        The poller reads from the new start again (its watermark moves back to it), so
        invoices between the two are fiscalized: the caller warns that they must not
        have been fiscalized elsewhere.
        """
        if starts_at.tzinfo is None:
            raise InvalidInput("the start must be an instant with a time zone")
        if starts_at > now:
            raise InvalidInput("the start cannot be in the future")
        async with self._tx() as session:
            row = await self._require(session, uid)
            if row.status == IntegrationStatus.REMOVED.value:
                raise InvalidInput(f"integration {uid!r} is removed")
            if row.starts_at is not None and starts_at >= row.starts_at:
                raise InvalidInput(
                    f"the start can only move earlier than {row.starts_at.isoformat()}; "
                    "invoices after that are fiscalized already"
                )
            row.starts_at = starts_at
            row.starts_at_chosen = True
            # The poller reads from the new start: a poll under way when this commits
            # finds the watermark changed and does not advance it (Watermarks.advance).
            poll = await session.get(PollState, uid)
            if poll is None:
                session.add(PollState(integration_uid=uid, watermark=starts_at))
            else:
                poll.watermark = starts_at

    async def get(self, uid: str) -> IntegrationRecord | None:
        async with self._tx() as session:
            row = await session.get(Integration, uid)
            return _record(row) if row else None

    async def find(
        self,
        *,
        account_id: str | None = None,
        statuses: Sequence[IntegrationStatus] | None = None,
    ) -> list[IntegrationRecord]:
        query = select(Integration).order_by(Integration.created_at, Integration.uid)
        if account_id is not None:
            query = query.where(Integration.account_id == account_id)
        if statuses is not None:
            query = query.where(Integration.status.in_([s.value for s in statuses]))
        async with self._tx() as session:
            return [_record(row) for row in await session.scalars(query)]

    async def list_active(self) -> list[IntegrationRecord]:
        return await self.find(statuses=[IntegrationStatus.ACTIVE])

    async def count_by_status(self) -> dict[str, int]:
        query = select(Integration.status, func.count()).group_by(Integration.status)
        async with self._tx() as session:
            return {status: n for status, n in (await session.execute(query)).tuples()}

    async def webhook_secret(self, uid: str) -> str:
        async with self._tx() as session:
            row = await self._require(session, uid)
            context = secret_context(row, "webhook_secret")
            return self._vault.decrypt(row.webhook_secret, context).decode()

    async def webhook_secrets(self, uid: str) -> WebhookSecrets:
        """The current secret and, until its grace period ends, the one before it."""
        async with self._tx() as session:
            row = await self._require(session, uid)
            current = self._vault.decrypt(
                row.webhook_secret, secret_context(row, "webhook_secret")).decode()
            previous = None
            if row.previous_webhook_secret is not None:
                previous = self._vault.decrypt(
                    row.previous_webhook_secret, secret_context(row, "previous_webhook_secret")
                ).decode()
            return WebhookSecrets(current, previous, row.previous_webhook_secret_until,
                                  row.webhook_secret_shown_at)

    async def rotate_webhook_secret(self, uid: str, *, grace: timedelta, now: datetime) -> str:
        """A new secret; the current one stays accepted for `grace` (webhooks Zoho sends
        before the owner pasted the new one). A secret still in its grace period from an
        earlier rotation is dropped: only the secret being replaced is kept."""
        secret = new_webhook_secret()
        async with self._tx() as session:
            row = await self._require(session, uid)
            current = self._vault.decrypt(
                row.webhook_secret, secret_context(row, "webhook_secret"))
            row.previous_webhook_secret = self._vault.encrypt(
                current, secret_context(row, "previous_webhook_secret"))
            row.previous_webhook_secret_until = now + grace
            row.webhook_secret = self._vault.encrypt(
                secret.encode(), secret_context(row, "webhook_secret"))
            row.webhook_secret_shown_at = None
        return secret

    async def claim_webhook_secret_showing(self, uid: str, *, now: datetime) -> bool:
        """True once per secret: the caller may show it in full (it is masked after)."""
        async with self._tx() as session:
            result = await session.execute(
                update(Integration)
                .where(Integration.uid == uid, Integration.webhook_secret_shown_at.is_(None))
                .values(webhook_secret_shown_at=now)
            )
            return bool(cast(CursorResult[Any], result).rowcount)

    async def certificate(self, uid: str) -> tuple[bytes, str]:
        """The current certificate: (PFX bytes, PFX password), decrypted."""
        async with self._tx() as session:
            row = await self._current_certificate(session, uid)
            pfx = self._vault.decrypt(row.pfx, secret_context(row, "pfx"))
            password = self._vault.decrypt(row.password, secret_context(row, "password"))
            return pfx, password.decode()

    async def certificate_info(self, uid: str) -> CertificateInfo:
        async with self._tx() as session:
            return _certificate_info(await self._current_certificate(session, uid))

    async def certificate_history(self, uid: str) -> list[CertificateInfo]:
        query = (
            select(Certificate)
            .where(Certificate.integration_uid == uid)
            .order_by(Certificate.uploaded_at, Certificate.id)
        )
        async with self._tx() as session:
            return [_certificate_info(row) for row in await session.scalars(query)]

    def _certificate_row(
        self, uid: str, pfx: bytes, password: str, facts: CertificateFacts, now: datetime
    ) -> Certificate:
        row = Certificate(
            id=new_id(),
            integration_uid=uid,
            subject=facts.subject,
            issuer=facts.issuer,
            serial=str(facts.serial),
            oib=facts.oib,
            fingerprint_sha256=facts.fingerprint_sha256,
            not_before=facts.not_before,
            not_after=facts.not_after,
            uploaded_at=now,
            is_current=True,
        )
        row.pfx = self._vault.encrypt(pfx, secret_context(row, "pfx"))
        row.password = self._vault.encrypt(password.encode(), secret_context(row, "password"))
        return row

    @staticmethod
    async def _require(session: Any, uid: str) -> Integration:
        row: Integration | None = await session.get(Integration, uid)
        if row is None:
            raise NotFound(f"no integration {uid!r}")
        return row

    @staticmethod
    async def _current_certificate(session: Any, uid: str) -> Certificate:
        row: Certificate | None = await session.scalar(
            select(Certificate).where(Certificate.integration_uid == uid, Certificate.is_current)
        )
        if row is None:
            raise NotFound(f"integration {uid!r} has no certificate")
        return row


def _record(row: Integration) -> IntegrationRecord:
    return IntegrationRecord(
        uid=row.uid,
        account_id=row.account_id,
        type=row.type,
        status=IntegrationStatus(row.status),
        tier=row.tier,
        created_at=row.created_at,
        fiscal_profile=row.fiscal_profile,
        fiscal_settings=dict(row.fiscal_settings),
        zoho_organization_id=row.zoho_organization_id,
        zoho_accounts_server=row.zoho_accounts_server,
        zoho_api_domain=row.zoho_api_domain,
        status_reason=row.status_reason,
        status_changed_at=row.status_event_at,
        starts_at=row.starts_at,
        starts_at_chosen=bool(row.starts_at_chosen),
        name=row.name,
        writeback_fields=dict(row.writeback_fields or {}),
        zoho_read_options=dict(row.zoho_read_options or {}),
        webhook_seen_at=row.webhook_seen_at,
    )


def _certificate_info(row: Certificate) -> CertificateInfo:
    return CertificateInfo(
        id=row.id,
        integration_uid=row.integration_uid,
        subject=row.subject,
        issuer=row.issuer,
        serial=row.serial,
        oib=row.oib,
        fingerprint_sha256=row.fingerprint_sha256,
        not_before=row.not_before,
        not_after=row.not_after,
        uploaded_at=row.uploaded_at,
        is_current=row.is_current,
        replaced_at=row.replaced_at,
    )
