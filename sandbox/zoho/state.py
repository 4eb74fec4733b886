"""The sandbox's world: OAuth clients, users, organizations, grants, invoices, limits.

Plain objects mutated only on the sandbox's event loop; HTTP lives in the routers.
Ids look like Zoho's: numeric strings, invoice ids 19 digits (beyond a double's
53 bits, so a client that parses them as floats visibly breaks).
"""

from __future__ import annotations

import itertools
import secrets
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo


class SandboxClock:
    """Real time plus an offset the admin API can advance (token expiry, daily reset)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class DataCentre:
    key: str  # "com" or "eu"
    location: str  # the redirect's `location`: "us" or "eu"
    accounts_url: str = ""
    api_url: str = ""


@dataclass
class Settings:
    access_token_ttl: int = 3600
    code_ttl: int = 60
    max_refresh_tokens: int = 20  # per user and client; the 21st deletes the oldest
    max_access_tokens_per_window: int = 10  # per refresh token
    access_token_window: int = 600


@dataclass
class Limits:
    per_minute: int = 100
    window_seconds: float = 60.0
    daily: int = 10_000
    max_in_flight: int = 10
    latency_seconds: float = 0.0


@dataclass
class WebhookConfig:
    url: str
    secret: str
    duplicate_probability: float = 0.0
    drop_probability: float = 0.0
    max_attempts: int = 4
    retry_base_seconds: float = 0.5
    signature_encoding: str = "hex"  # or "base64": Zoho's encoding is not documented


@dataclass
class OAuthClient:
    client_id: str
    client_secret: str
    redirect_uris: list[str]


@dataclass
class User:
    user_id: str
    email: str
    password: str
    dc: str


@dataclass
class Grant:
    """What a code, refresh token or access token stands for."""

    client_id: str
    user_id: str
    dc: str
    scopes: tuple[str, ...]
    organization_ids: tuple[str, ...] | None  # None: every organization of the user


@dataclass
class AuthCode:
    grant: Grant
    redirect_uri: str
    issued_at: datetime
    offline: bool
    used: bool = False


@dataclass
class RefreshToken:
    token: str
    grant: Grant
    issued_at: datetime
    access_issued: deque[datetime] = field(default_factory=deque)


@dataclass
class AccessToken:
    token: str
    grant: Grant
    refresh_token: str | None
    expires_at: datetime


@dataclass
class StoredInvoice:
    """An invoice or credit note as entered; `sandbox.zoho.books` computes it on output."""

    invoice_id: str
    fields: dict[str, Any]
    created_time: datetime
    last_modified_time: datetime
    custom_values: dict[str, Any] = field(default_factory=dict)  # customfield_id -> value
    comments: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class OrgTax:
    """A tax of the organization: Global edition taxes are a name and a rate."""

    tax_id: str
    name: str  # "PDV25": what a line's tax_name says
    percentage: Decimal

    @property
    def long_name(self) -> str:
        """What line_item_taxes[] and taxes[] say: "PDV25 (25%)"."""
        return f"{self.name} ({self.percentage.normalize():f}%)"


DEFAULT_TAXES = (("PDV25", "25"), ("PDV13", "13"), ("PDV5", "5"), ("PDV0 oslobodjeno", "0"))
DEFAULT_INVOICE_FIELDS = (
    ("cf_fiskalni_broj", "Fiskalni broj"),
    ("cf_zki", "ZKI"),
    ("cf_jir", "JIR"),
    ("cf_qr_url", "QR URL"),
)
# Zoho keeps custom fields per module: a credit note's fields have ids of their own.
DEFAULT_CREDIT_NOTE_FIELDS = DEFAULT_INVOICE_FIELDS
PLAN_DAILY_CAPS = {"free": 1000, "standard": 2000, "professional": 5000, "premium": 10_000}


@dataclass
class Organization:
    organization_id: str
    name: str
    dc: str
    time_zone: str
    currency_code: str
    user_ids: set[str]
    limits: Limits = field(default_factory=Limits)
    webhook: WebhookConfig | None = None
    invoices: dict[str, StoredInvoice] = field(default_factory=dict)
    credit_notes: dict[str, StoredInvoice] = field(default_factory=dict)
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    note_numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    taxes: dict[str, OrgTax] = field(default_factory=dict)
    invoice_custom_fields: list[dict[str, Any]] = field(default_factory=list)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # as entered (admin)
    inclusive_tax: bool = False  # the organization's default for new invoices
    inclusive_totals: str = "gross"  # uncertain in Zoho: "gross" or "net" item totals
    plan: str = "premium"
    accepted: deque[datetime] = field(default_factory=deque)  # rolling-window calls
    day: date | None = None
    day_calls: int = 0
    in_flight: int = 0

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz)

    def add_tax(self, name: str, percentage: Decimal) -> OrgTax:
        tax_id = str(
            460_000_000_000_100 + int(self.organization_id) % 10**4 * 100 + len(self.taxes)
        )
        tax = OrgTax(tax_id, name, percentage)
        self.taxes[tax_id] = tax
        return tax

    def tax_for_rate(self, percentage: Decimal) -> OrgTax:
        """The first tax at that rate; a new "VAT<rate>" tax when there is none."""
        for tax in self.taxes.values():
            if tax.percentage == percentage:
                return tax
        return self.add_tax(f"VAT{percentage.normalize():f}", percentage)

    def custom_fields_of(self, entity: str) -> list[dict[str, Any]]:
        """The custom fields of one module ("invoice" or "creditnote")."""
        return [f for f in self.invoice_custom_fields if f["entity"] == entity]

    def add_invoice_custom_field(
        self, api_name: str, label: str, entity: str = "invoice"
    ) -> dict[str, Any]:
        """A custom field of the invoice module or, with entity="creditnote", of the
        credit note module (`invoice_custom_fields` holds both, told apart by entity)."""
        definition = {
            "customfield_id": str(460_000_000_000_500 + len(self.invoice_custom_fields)),
            "label": label,
            "api_name": api_name,
            "data_type": "string",
            "is_active": True,
            "show_on_pdf": True,
            "entity": entity,
        }
        self.invoice_custom_fields.append(definition)
        return definition


class SandboxError(Exception):
    """Bad admin input: answered 400 with the message."""


class BooksState:
    def __init__(self, data_centres: list[DataCentre], settings: Settings | None = None):
        self.clock = SandboxClock()
        self.settings = settings or Settings()
        self.data_centres = {dc.key: dc for dc in data_centres}
        self.clients: dict[str, OAuthClient] = {}
        self.users: dict[str, User] = {}  # by user_id
        self.organizations: dict[str, Organization] = {}
        self.codes: dict[str, AuthCode] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.login_tickets: dict[str, tuple[str, datetime]] = {}  # ticket -> user_id
        self.counters: dict[str, Counter[str]] = {}
        self._ids = itertools.count(1)
        self._org_ids = itertools.count(20_000_000_001)
        # 19 digits, above 2**63 / 2: survives only as a string or an exact integer.
        self._invoice_ids = itertools.count(5_000_000_000_000_000_001)

    # -- bookkeeping ---------------------------------------------------------------------
    def count(self, area: str, outcome: str, n: int = 1) -> None:
        self.counters.setdefault(area, Counter())[outcome] += n

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {area: dict(counter) for area, counter in sorted(self.counters.items())}

    @staticmethod
    def new_token(prefix: str = "1000") -> str:
        return f"{prefix}.{secrets.token_hex(16)}.{secrets.token_hex(16)}"

    # -- directory -----------------------------------------------------------------------
    def add_client(
        self, redirect_uris: list[str], client_id: str | None = None, secret: str | None = None
    ) -> OAuthClient:
        if not redirect_uris:
            raise SandboxError("a client needs at least one redirect_uri")
        client = OAuthClient(
            client_id=client_id or f"1000.{secrets.token_hex(15).upper()}",
            client_secret=secret or secrets.token_hex(21),
            redirect_uris=list(redirect_uris),
        )
        self.clients[client.client_id] = client
        return client

    def add_user(self, email: str, password: str, dc: str) -> User:
        if dc not in self.data_centres:
            raise SandboxError(f"unknown data centre {dc!r}; one of {sorted(self.data_centres)}")
        if self.user_by_email(email) is not None:
            raise SandboxError(f"user {email} exists")
        user = User(str(next(self._ids) + 700_000_000), email.lower(), password, dc)
        self.users[user.user_id] = user
        return user

    def user_by_email(self, email: str) -> User | None:
        return next((u for u in self.users.values() if u.email == email.lower()), None)

    def add_organization(
        self,
        name: str,
        emails: list[str],
        time_zone: str,
        currency_code: str,
        limits: Limits | None = None,
    ) -> Organization:
        users = [self.user_by_email(email) for email in emails]
        if not users or None in users:
            raise SandboxError(f"organization users must exist: {emails}")
        dcs = {u.dc for u in users if u is not None}
        if len(dcs) != 1:
            raise SandboxError("an organization lives in one data centre; its users too")
        try:
            ZoneInfo(time_zone)
        except Exception as error:
            raise SandboxError(f"unknown time zone {time_zone!r}") from error
        org = Organization(
            organization_id=str(next(self._org_ids)),
            name=name,
            dc=dcs.pop(),
            time_zone=time_zone,
            currency_code=currency_code.upper(),
            user_ids={u.user_id for u in users if u is not None},
            limits=limits or Limits(),
        )
        for tax_name, percentage in DEFAULT_TAXES:
            org.add_tax(tax_name, Decimal(percentage))
        for api_name, label in DEFAULT_INVOICE_FIELDS:
            org.add_invoice_custom_field(api_name, label)
        for api_name, label in DEFAULT_CREDIT_NOTE_FIELDS:
            org.add_invoice_custom_field(api_name, label, "creditnote")
        self.organizations[org.organization_id] = org
        return org

    def organization(self, organization_id: str) -> Organization:
        org = self.organizations.get(organization_id)
        if org is None:
            raise SandboxError(f"no organization {organization_id}")
        return org

    # -- invoices ------------------------------------------------------------------------
    def create_invoice(self, org: Organization, fields: dict[str, Any]) -> StoredInvoice:
        now = self.clock.now().replace(microsecond=0)
        created = instant_of(fields.pop("created_time", None)) or now
        modified = instant_of(fields.pop("last_modified_time", None)) or created
        fields.setdefault("invoice_number", f"INV-{next(org.numbers):06d}")
        fields.setdefault("date", org.local(created).date().isoformat())
        invoice = StoredInvoice(str(next(self._invoice_ids)), fields, created, modified)
        org.invoices[invoice.invoice_id] = invoice
        return invoice

    def create_credit_note(self, org: Organization, fields: dict[str, Any]) -> StoredInvoice:
        now = self.clock.now().replace(microsecond=0)
        created = instant_of(fields.pop("created_time", None)) or now
        modified = instant_of(fields.pop("last_modified_time", None)) or created
        fields.setdefault("creditnote_number", f"CN-{next(org.note_numbers):05d}")
        fields.setdefault("date", org.local(created).date().isoformat())
        for entry in fields.get("invoices_credited") or []:
            credited = org.invoices.get(str(entry.get("invoice_id", "")))
            if credited is None:
                raise SandboxError(f"credited invoice {entry.get('invoice_id')!r} does not exist")
            entry.setdefault("invoice_number", credited.fields["invoice_number"])
        note = StoredInvoice(str(next(self._invoice_ids)), fields, created, modified)
        org.credit_notes[note.invoice_id] = note
        return note

    def edit_invoice(
        self, org: Organization, invoice_id: str, changes: dict[str, Any], *, note: bool = False
    ) -> StoredInvoice:
        invoice = (org.credit_notes if note else org.invoices).get(invoice_id)
        if invoice is None:
            raise SandboxError(f"no invoice {invoice_id} in organization {org.organization_id}")
        explicit = instant_of(changes.pop("last_modified_time", None))
        invoice.fields.update(changes)
        self.touch(invoice, explicit)
        return invoice

    def touch(self, invoice: StoredInvoice, explicit: datetime | None = None) -> None:
        """An edit (also a custom-field write or a payment) moves last_modified_time."""
        # Zoho's timestamps have whole seconds: two edits in one second would look like
        # one version, so each edit moves the time forward by at least a second.
        floor = invoice.last_modified_time + timedelta(seconds=1)
        invoice.last_modified_time = explicit or max(self.clock.now().replace(microsecond=0), floor)

    # -- OAuth ---------------------------------------------------------------------------
    def issue_code(self, grant: Grant, redirect_uri: str, offline: bool) -> str:
        code = self.new_token()
        self.codes[code] = AuthCode(grant, redirect_uri, self.clock.now(), offline)
        return code

    def issue_refresh_token(self, grant: Grant) -> RefreshToken:
        now = self.clock.now()
        mine = sorted(
            (
                t
                for t in self.refresh_tokens.values()
                if t.grant.user_id == grant.user_id and t.grant.client_id == grant.client_id
            ),
            key=lambda t: t.issued_at,
        )
        while len(mine) >= self.settings.max_refresh_tokens:
            self.revoke_refresh_token(mine.pop(0).token)  # silently, like Zoho
            self.count("oauth", "refresh_token_evicted")
        token = RefreshToken(self.new_token(), grant, now)
        self.refresh_tokens[token.token] = token
        return token

    def issue_access_token(self, grant: Grant, refresh_token: str | None) -> AccessToken:
        token = AccessToken(
            self.new_token(),
            grant,
            refresh_token,
            self.clock.now() + timedelta(seconds=self.settings.access_token_ttl),
        )
        self.access_tokens[token.token] = token
        return token

    def revoke_refresh_token(self, token: str) -> bool:
        if self.refresh_tokens.pop(token, None) is None:
            return False
        for access in [a for a in self.access_tokens.values() if a.refresh_token == token]:
            del self.access_tokens[access.token]
        return True

    def revoke_user(self, user: User, client_id: str | None = None) -> int:
        doomed = [
            t.token
            for t in self.refresh_tokens.values()
            if t.grant.user_id == user.user_id and client_id in (None, t.grant.client_id)
        ]
        for token in doomed:
            self.revoke_refresh_token(token)
        return len(doomed)

    def expire_access_tokens(self, user: User | None = None) -> int:
        now = self.clock.now()
        expired = 0
        for access in self.access_tokens.values():
            if user is None or access.grant.user_id == user.user_id:
                access.expires_at = min(access.expires_at, now)
                expired += 1
        return expired

    def organizations_of(self, grant: Grant) -> list[Organization]:
        return [
            org
            for org in self.organizations.values()
            if grant.user_id in org.user_ids
            and org.dc == grant.dc
            and (grant.organization_ids is None or org.organization_id in grant.organization_ids)
        ]


def instant_of(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError as error:
            raise SandboxError(f"time {value!r} is not ISO 8601") from error
    if parsed.tzinfo is None:
        raise SandboxError(f"time {value!r} needs a UTC offset")
    return parsed.astimezone(UTC)


def decimal_of(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except Exception as error:
        raise SandboxError(f"{what} must be a number, got {value!r}") from error
    if not number.is_finite():
        raise SandboxError(f"{what} must be finite")
    return number
