"""The store's tables. Migrations in `runtime/store/migrations/versions/` create them.

Columns holding secrets are `LargeBinary` vault ciphertexts (see `runtime.vault`); the
`ENCRYPTED` registry below names every one of them, so rotation and the "nothing in
clear" test cannot miss a column added later.

The fiscal journal and license usage carry the integration uid without a foreign key:
they are the legal archive and billing record, fed from events that may reach the
projector before (or long after) the integration row they belong to.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from runtime.store.types import UtcDateTime
from schemas.tiers import TIERS

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class IntegrationStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    INACTIVE = "inactive"
    REMOVED = "removed"


# TIERS (schemas/tiers.py) is what the integrations.tier CHECK allows.
INVOICE_STATES = (
    "fiscalized", "rejected", "blocked", "duplicate", "retrying", "failed", "skipped",
)
DOCUMENT_KINDS = ("invoice", "credit_note")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # argon2id PHC string; None until the user sets a password in the portal
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    name: Mapped[str | None] = mapped_column(String(200))  # how the portal addresses them
    password_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Integration(Base):
    __tablename__ = "integrations"
    __table_args__ = (
        CheckConstraint(_in("status", tuple(IntegrationStatus)), name="status"),
        CheckConstraint(_in("tier", TIERS), name="tier"),
        # One Zoho organization, one integration fiscalizing it: two would report every
        # invoice twice under two certificates.
        Index("uq_integrations_zoho_organization_claim", "zoho_organization_claim",
              unique=True),
    )

    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    # The customer's own label ("Shop Zagreb"); the uid stays the identifier.
    name: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    tier: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    fiscal_profile: Mapped[str] = mapped_column(String(32))
    fiscal_settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    zoho_organization_id: Mapped[str | None] = mapped_column(String(64))
    zoho_accounts_server: Mapped[str | None] = mapped_column(String(200))
    zoho_api_domain: Mapped[str | None] = mapped_column(String(200))
    webhook_secret: Mapped[bytes] = mapped_column(LargeBinary)
    # After a rotation the previous secret keeps verifying webhooks until the instant
    # below (a grace period), so Zoho's rule can be updated without losing invoices.
    previous_webhook_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_webhook_secret_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The secret is shown in full once; afterwards only masked, or revealed with the
    # password. NULL: not shown yet.
    webhook_secret_shown_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The organization this integration holds, from choosing it until removal (NULL
    # then): an inactive integration keeps it, and Reconnect is how it comes back.
    zoho_organization_claim: Mapped[str | None] = mapped_column(String(64))
    # Nothing created in the source before this instant is fiscalized: the moment the
    # integration first became active, or an earlier one the customer chose explicitly.
    starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    starts_at_chosen: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # Projection bookkeeping: which integration event decided status and tier, so an
    # older event delivered late never moves them backwards.
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_event_id: Mapped[str | None] = mapped_column(String(128))
    status_event_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    tier_event_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # When the latest change that can let through invoices refused before they were
    # signed happened (runtime.store.refetch): one refused before it but projected after
    # it is queued when projected.
    let_through_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Write-back: role (fiscal_number, zki, jir, qr_url) -> the customer's Zoho invoice
    # customfield_id. NULL or empty: nothing mapped, the write-back stage waits.
    writeback_fields: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # How its Zoho documents are read (connectors.zoho.mapping.MappingOptions as JSON:
    # buyer tax field, payment modes, default payment method, base currency); the poller
    # and ingest read the same. NULL or empty: the defaults.
    zoho_read_options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # When ingest last accepted a webhook for it (written at most once a minute).
    webhook_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Certificate(Base):
    __tablename__ = "certificates"
    __table_args__ = (
        Index(
            "uq_certificates_current",
            "integration_uid",
            unique=True,
            sqlite_where=text("is_current"),
            postgresql_where=text("is_current"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    integration_uid: Mapped[str] = mapped_column(ForeignKey("integrations.uid"), index=True)
    pfx: Mapped[bytes] = mapped_column(LargeBinary)
    password: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(Text)
    serial: Mapped[str] = mapped_column(String(128))
    oib: Mapped[str] = mapped_column(String(11))
    fingerprint_sha256: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[datetime] = mapped_column(UtcDateTime())
    not_after: Mapped[datetime] = mapped_column(UtcDateTime())
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime())
    is_current: Mapped[bool] = mapped_column(Boolean)
    replaced_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class OAuthToken(Base):
    __tablename__ = "oauth_tokens"

    integration_uid: Mapped[str] = mapped_column(
        ForeignKey("integrations.uid"), primary_key=True
    )
    refresh_token: Mapped[bytes] = mapped_column(LargeBinary)
    access_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PollState(Base):
    __tablename__ = "poll_state"

    integration_uid: Mapped[str] = mapped_column(
        ForeignKey("integrations.uid"), primary_key=True
    )
    watermark: Mapped[datetime | None] = mapped_column(UtcDateTime())
    lease_holder: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class RefetchRequest(Base):
    """A document to read again from the source at the integration's next poll
    (runtime.store.refetch)."""

    __tablename__ = "refetch_requests"

    integration_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    source_invoice_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reason: Mapped[str] = mapped_column(String(200))


class JournalEntry(Base):
    __tablename__ = "fiscal_journal"
    __table_args__ = (
        CheckConstraint(_in("state", INVOICE_STATES), name="state"),
        CheckConstraint(_in("kind", DOCUMENT_KINDS), name="kind"),
        # The portal's invoice lists: one integration's rows in issue order (keyset pages,
        # the date range), narrowed by state, sorted by fiscal number, found by invoice
        # number or customer prefix. Every list query is one range scan of one of these.
        Index("ix_fiscal_journal_issued", "integration_uid", "issued_at", "source_invoice_id"),
        Index("ix_fiscal_journal_state_issued", "integration_uid", "state", "issued_at",
              "source_invoice_id"),
        Index("ix_fiscal_journal_fiscal", "integration_uid", "fiscal_seq", "source_invoice_id"),
        Index("ix_fiscal_journal_number", "integration_uid", "invoice_number"),
        Index("ix_fiscal_journal_customer", "integration_uid", "customer_key"),
    )

    integration_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    source_invoice_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    source_version: Mapped[str] = mapped_column(String(128))
    invoice_number: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason_code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    protection_code: Mapped[str | None] = mapped_column(String(64))
    fiscal_number: Mapped[str | None] = mapped_column(String(64))  # as printed: 57/POSL1/1
    receipt_id: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(64))
    signed_request: Mapped[str | None] = mapped_column(Text)
    signed_answer: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    fiscalized_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # the event whose state is shown (not necessarily the last one delivered)
    last_event_id: Mapped[str] = mapped_column(String(128))
    last_occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # What a person finds the invoice by. `issued_at` is the moment of issue; for rows
    # whose events did not carry one, when the journal first saw the invoice.
    kind: Mapped[str] = mapped_column(String(16), server_default="invoice")
    customer: Mapped[str | None] = mapped_column(String(200))
    # Casefolded, for "starts with": compared bytewise (on PostgreSQL the "C" collation,
    # so a prefix is one index range whatever the database's locale).
    customer_key: Mapped[str | None] = mapped_column(
        String(200).with_variant(String(200, collation="C"), "postgresql")
    )
    # Integer euro cents: exact on both databases (the QR code's `izn` is cents too).
    total_cents: Mapped[int | None] = mapped_column(BigInteger)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    fiscal_seq: Mapped[int | None] = mapped_column(Integer)  # the 57 of 57/POSL1/1
    # Past the legal deadline for delivering it, as the latest status said (the portal's
    # "late" warning; a late delivery that was fiscalized stays marked).
    late: Mapped[bool] = mapped_column(Boolean, server_default=false())


class WriteBackRecord(Base):
    """The latest write-back outcome of an invoice (services/writeback), by occurred_at:
    a separate table, so an outcome projected before its invoice's status is kept."""

    __tablename__ = "writeback_states"

    integration_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    source_invoice_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    writeback_state: Mapped[str] = mapped_column(String(16))
    writeback_reason: Mapped[str | None] = mapped_column(Text)
    fiscal_number: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())


class JournalEvent(Base):
    """Every status an invoice went through (the journal row holds only the latest)."""

    __tablename__ = "journal_events"
    __table_args__ = (
        Index("ix_journal_events_invoice", "integration_uid", "source_invoice_id",
              "occurred_at"),
    )

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    integration_uid: Mapped[str] = mapped_column(String(64))
    source_invoice_id: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())


class JournalDaily(Base):
    """Journal rows per integration, day of issue in Croatian time (Europe/Zagreb) and
    state: kept by the projection in the transaction that changes the journal, so the
    dashboard's chart reads a month of these instead of counting journal rows."""

    __tablename__ = "journal_daily"

    integration_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    invoices: Mapped[int] = mapped_column(Integer)


class LicenseUsage(Base):
    __tablename__ = "license_usage"

    integration_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # "2025-03"
    fiscalized: Mapped[int] = mapped_column(Integer)


class ProcessedEvent(Base):
    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    integration_uid: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(64))
    processed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PortalSession(Base):
    """A signed-in portal session. The cookie carries a random token; only its SHA-256
    is stored, so a copy of this table signs nobody in. Deleting the row ends the
    session at once, whatever cookie copies exist (Sign out, password change, "end")."""

    __tablename__ = "portal_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # shown, never a secret
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))


class LoginFailure(Base):
    """One refused sign-in (or password-reset mail), counted per account and per client
    address over a sliding window to throttle guessing."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_scope_key_at", "scope", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(16))  # account | ip | reset
    key: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class PasswordReset(Base):
    """A password-reset link sent by e-mail: single use, short-lived, stored hashed."""

    __tablename__ = "password_resets"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class EmailChange(Base):
    """A requested change of a user's e-mail address, applied only when the link mailed to
    the new address is opened: single use, expiring, stored hashed. Until then the old
    address stays the one the user signs in with."""

    __tablename__ = "email_changes"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    new_email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


def _context(table: str, column: str, integration_uid: str, row: str) -> str:
    return f"{table}.{column}|{integration_uid}|{row}"


def secret_context(row: Base, column: str) -> str:
    """Associated data of a ciphertext: it decrypts only in this row and column."""
    if isinstance(row, Integration):
        return _context(Integration.__tablename__, column, row.uid, row.uid)
    if isinstance(row, Certificate):
        return _context(Certificate.__tablename__, column, row.integration_uid, row.id)
    if isinstance(row, OAuthToken):
        return _context(
            OAuthToken.__tablename__, column, row.integration_uid, row.integration_uid
        )
    raise TypeError(f"{type(row).__name__} holds no secrets")


ENCRYPTED: tuple[tuple[type[Base], tuple[str, ...]], ...] = (
    (Integration, ("webhook_secret", "previous_webhook_secret")),
    (Certificate, ("pfx", "password")),
    (OAuthToken, ("refresh_token", "access_token")),
)
"""Every model and its columns that hold vault ciphertexts."""
