"""Accounts (a business) and their users (people who log in to the portal): passwords,
signed-in sessions, login throttling, password-reset and e-mail-change tokens.

Session, reset and e-mail-change tokens are random; only their SHA-256 is stored, so
reading the store signs nobody in, resets no password and changes no address.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import CursorResult, delete, func, select

from runtime.store.models import (
    Account,
    EmailChange,
    LoginFailure,
    PasswordReset,
    PortalSession,
    User,
)
from runtime.store.repository import InvalidInput, NotFound, Repository, new_id

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# argon2-cffi's defaults are argon2id with the RFC 9106 low-memory profile.
_hasher = PasswordHasher()


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise InvalidInput(f"{email!r} is not an e-mail address")
    return email


@dataclass(frozen=True)
class AccountRecord:
    account_id: str
    user_id: str
    email: str
    has_password: bool
    created_at: datetime
    name: str | None = None
    password_changed_at: datetime | None = None


@dataclass(frozen=True)
class SessionRecord:
    """A signed-in session as the "active sessions" list shows it (no token)."""

    id: str
    user_id: str
    account_id: str
    email: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None


class EmailTaken(InvalidInput):
    pass


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# A session's last-seen time is written at most this often (a write per page is waste).
LAST_SEEN_RESOLUTION = timedelta(minutes=1)


class Accounts(Repository):
    async def create(
        self, email: str, password: str | None = None, *, name: str | None = None
    ) -> AccountRecord:
        email = normalize_email(email)
        now = datetime.now(UTC)
        async with self._tx() as session:
            if await session.scalar(select(User.id).where(User.email == email)):
                raise EmailTaken(f"an account for {email} already exists")
            account = Account(id=new_id(), name=name, created_at=now)
            user = User(
                id=new_id(),
                account_id=account.id,
                email=email,
                password_hash=_hasher.hash(password) if password else None,
                created_at=now,
            )
            session.add(account)
            await session.flush()
            session.add(user)
        return _record(user)

    async def get(self, email: str) -> AccountRecord | None:
        async with self._tx() as session:
            user = await session.scalar(select(User).where(User.email == normalize_email(email)))
            return _record(user) if user else None

    async def owner_email(self, account_id: str) -> str | None:
        """The e-mail of the account's first user."""
        async with self._tx() as session:
            return await session.scalar(
                select(User.email)
                .where(User.account_id == account_id)
                .order_by(User.created_at, User.id)
                .limit(1)
            )

    async def ensure(self, email: str) -> tuple[AccountRecord, bool]:
        """The account of `email`, created (without a password) if there is none."""
        existing = await self.get(email)
        if existing:
            return existing, False
        return await self.create(email), True

    async def set_password(self, email: str, password: str) -> None:
        if not password:
            raise InvalidInput("a password cannot be empty")
        async with self._tx() as session:
            user = await session.scalar(select(User).where(User.email == normalize_email(email)))
            if user is None:
                raise NotFound(f"no account for {email}")
            user.password_hash = _hasher.hash(password)
            user.password_changed_at = datetime.now(UTC)
            # A new password ends every session signed in with the old one.
            await session.execute(delete(PortalSession).where(PortalSession.user_id == user.id))

    async def authenticate(self, email: str, password: str) -> AccountRecord | None:
        """The account if the password matches; None otherwise (unknown e-mail included)."""
        async with self._tx() as session:
            user = await session.scalar(select(User).where(User.email == normalize_email(email)))
            if user is None or user.password_hash is None:
                # Same work as a wrong password, so timing does not reveal which e-mails exist.
                _verify(_dummy_hash(), password)
                return None
            if not _verify(user.password_hash, password):
                return None
            if _hasher.check_needs_rehash(user.password_hash):
                user.password_hash = _hasher.hash(password)
            return _record(user)


    # -- profile -----------------------------------------------------------------------
    async def by_user(self, user_id: str) -> AccountRecord | None:
        async with self._tx() as session:
            user = await session.get(User, user_id)
            return _record(user) if user else None

    async def check_password(self, user_id: str, password: str) -> bool:
        async with self._tx() as session:
            user = await session.get(User, user_id)
            if user is None or user.password_hash is None:
                _verify(_dummy_hash(), password)
                return False
            return _verify(user.password_hash, password)

    async def set_name(self, user_id: str, name: str | None) -> None:
        name = (name or "").strip() or None
        if name is not None and len(name) > 200:
            raise InvalidInput("a name is at most 200 characters")
        async with self._tx() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound("no such user")
            user.name = name

    async def change_email(self, user_id: str, email: str) -> str:
        """Sets the address at once: an operator's tool. The portal asks the new mailbox
        first (`request_email_change`, `confirm_email_change`)."""
        email = normalize_email(email)
        async with self._tx() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound("no such user")
            if user.email == email:
                return email
            if await session.scalar(select(User.id).where(User.email == email)):
                raise EmailTaken(f"another account already uses {email}")
            user.email = email
        return email

    async def change_password(self, user_id: str, password: str, *, now: datetime) -> None:
        """Sets the password and ends every session of the user (the caller starts a new
        one for the browser that made the change)."""
        if not password:
            raise InvalidInput("a password cannot be empty")
        async with self._tx() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound("no such user")
            user.password_hash = _hasher.hash(password)
            user.password_changed_at = now
            await session.execute(delete(PortalSession).where(PortalSession.user_id == user_id))
            await session.execute(
                delete(PasswordReset).where(PasswordReset.user_id == user_id)
            )
            # A change requested under the old password is not carried past a new one.
            await session.execute(delete(EmailChange).where(EmailChange.user_id == user_id))

    # -- sessions ----------------------------------------------------------------------
    async def start_session(
        self, user_id: str, *, now: datetime, lifetime: timedelta, ip: str | None,
        user_agent: str | None,
    ) -> tuple[str, str]:
        """A new session: (its id, the token for the cookie). Expired rows go too."""
        token = secrets.token_urlsafe(32)
        session_id = new_id()
        async with self._tx() as session:
            await session.execute(delete(PortalSession).where(PortalSession.expires_at <= now))
            session.add(PortalSession(
                id=session_id, token_hash=token_hash(token), user_id=user_id,
                created_at=now, last_seen_at=now, expires_at=now + lifetime,
                ip=(ip or None) and ip[:64], user_agent=(user_agent or None) and user_agent[:300],
            ))
        return session_id, token

    async def resolve_session(self, token: str, *, now: datetime) -> SessionRecord | None:
        """The live session of a cookie token; None when it was ended or has expired."""
        async with self._tx() as session:
            found = (await session.execute(
                select(PortalSession, User)
                .join(User, User.id == PortalSession.user_id)
                .where(PortalSession.token_hash == token_hash(token))
            )).first()
            if found is None:
                return None
            row, user = found
            if row.expires_at <= now:
                await session.delete(row)
                return None
            if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
                row.last_seen_at = now
            return _session_record(row, user)

    async def sessions_of(self, user_id: str, *, now: datetime) -> list[SessionRecord]:
        async with self._tx() as session:
            rows = (await session.execute(
                select(PortalSession, User)
                .join(User, User.id == PortalSession.user_id)
                .where(PortalSession.user_id == user_id, PortalSession.expires_at > now)
                .order_by(PortalSession.last_seen_at.desc(), PortalSession.id)
            )).all()
            return [_session_record(row, user) for row, user in rows]

    async def end_session(self, user_id: str, session_id: str) -> bool:
        """Ends one of the user's sessions; False if it is not theirs or already gone."""
        async with self._tx() as session:
            result = await session.execute(delete(PortalSession).where(
                PortalSession.id == session_id, PortalSession.user_id == user_id))
            return bool(cast(CursorResult[Any], result).rowcount)

    async def end_session_by_token(self, token: str) -> None:
        async with self._tx() as session:
            await session.execute(
                delete(PortalSession).where(PortalSession.token_hash == token_hash(token)))

    async def end_other_sessions(self, user_id: str, keep_id: str) -> int:
        async with self._tx() as session:
            result = await session.execute(delete(PortalSession).where(
                PortalSession.user_id == user_id, PortalSession.id != keep_id))
            return int(cast(CursorResult[Any], result).rowcount or 0)

    # -- throttling --------------------------------------------------------------------
    async def record_failure(self, scope: str, key: str, *, now: datetime) -> None:
        async with self._tx() as session:
            session.add(LoginFailure(scope=scope, key=key[:320], at=now))

    async def recent_failures(
        self, scope: str, key: str, *, since: datetime
    ) -> tuple[int, datetime | None]:
        """How many failures under (scope, key) since `since`, and the oldest of them."""
        async with self._tx() as session:
            count, oldest = (await session.execute(
                select(func.count(), func.min(LoginFailure.at)).where(
                    LoginFailure.scope == scope, LoginFailure.key == key[:320],
                    LoginFailure.at > since)
            )).one()
            return int(count), oldest

    async def clear_failures(self, scope: str, key: str) -> None:
        async with self._tx() as session:
            await session.execute(delete(LoginFailure).where(
                LoginFailure.scope == scope, LoginFailure.key == key[:320]))

    async def forget_failures_before(self, scopes: tuple[str, ...], before: datetime) -> None:
        """Drops the `scopes`' failures that no window counts any more."""
        async with self._tx() as session:
            await session.execute(delete(LoginFailure).where(
                LoginFailure.scope.in_(scopes), LoginFailure.at <= before))

    # -- password reset ----------------------------------------------------------------
    async def start_reset(self, email: str, *, now: datetime, lifetime: timedelta) -> str | None:
        """A reset token for the user of `email`, or None when there is no such user."""
        try:
            email = normalize_email(email)
        except InvalidInput:
            return None
        token = secrets.token_urlsafe(32)
        async with self._tx() as session:
            user = await session.scalar(select(User).where(User.email == email))
            if user is None:
                return None
            await session.execute(delete(PasswordReset).where(PasswordReset.expires_at <= now))
            session.add(PasswordReset(token_hash=token_hash(token), user_id=user.id,
                                      created_at=now, expires_at=now + lifetime))
        return token

    async def reset_user(self, token: str, *, now: datetime) -> AccountRecord | None:
        """The user a reset token is for, while it is unused and unexpired."""
        async with self._tx() as session:
            reset = await session.get(PasswordReset, token_hash(token))
            if reset is None or reset.used_at is not None or reset.expires_at <= now:
                return None
            user = await session.get(User, reset.user_id)
            return _record(user) if user else None

    async def finish_reset(
        self, token: str, password: str, *, now: datetime
    ) -> AccountRecord | None:
        """Sets the password through a reset token (used up, with the user's other reset
        tokens and all sessions); None when the token is unknown, used or expired."""
        if not password:
            raise InvalidInput("a password cannot be empty")
        async with self._tx() as session:
            reset = await session.get(PasswordReset, token_hash(token))
            if reset is None or reset.used_at is not None or reset.expires_at <= now:
                return None
            user = await session.get(User, reset.user_id)
            if user is None:
                return None
            user.password_hash = _hasher.hash(password)
            user.password_changed_at = now
            await session.execute(delete(PasswordReset).where(PasswordReset.user_id == user.id))
            await session.execute(delete(PortalSession).where(PortalSession.user_id == user.id))
            await session.execute(delete(EmailChange).where(EmailChange.user_id == user.id))
            return _record(user)

    # -- e-mail change -----------------------------------------------------------------
    async def request_email_change(
        self, user_id: str, email: str, *, now: datetime, lifetime: timedelta
    ) -> tuple[str, str, str]:
        """A token for the link that moves the user to `email`: (token, current address,
        new address). Nothing changes until `confirm_email_change`; a newer request
        replaces an older one."""
        email = normalize_email(email)
        token = secrets.token_urlsafe(32)
        async with self._tx() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound("no such user")
            if user.email == email:
                raise InvalidInput(f"{email} is your address already")
            if await session.scalar(select(User.id).where(User.email == email)):
                raise EmailTaken(f"another account already uses {email}")
            await session.execute(delete(EmailChange).where(
                (EmailChange.user_id == user_id) | (EmailChange.expires_at <= now)))
            session.add(EmailChange(token_hash=token_hash(token), user_id=user_id,
                                    new_email=email, created_at=now, expires_at=now + lifetime))
            return token, user.email, email

    async def pending_email_change(
        self, user_id: str, *, now: datetime
    ) -> tuple[str, datetime] | None:
        """The address a change waits to be confirmed for, and until when."""
        async with self._tx() as session:
            row = await session.scalar(
                select(EmailChange)
                .where(EmailChange.user_id == user_id, EmailChange.expires_at > now)
                .order_by(EmailChange.created_at.desc())
                .limit(1))
            return (row.new_email, row.expires_at) if row is not None else None

    async def email_change_of(self, token: str, *, now: datetime) -> tuple[str, str] | None:
        """(current address, new address) of an unused, unexpired change link."""
        async with self._tx() as session:
            change = await session.get(EmailChange, token_hash(token))
            if change is None or change.expires_at <= now:
                return None
            user = await session.get(User, change.user_id)
            return (user.email, change.new_email) if user is not None else None

    async def confirm_email_change(self, token: str, *, now: datetime) -> tuple[str, str] | None:
        """Moves the user to the link's address: (old address, new address), once; None
        when the link is unknown, used, replaced or expired. Raises EmailTaken when another
        account took the address meanwhile (the link stays until it expires)."""
        async with self._tx() as session:
            change = await session.get(EmailChange, token_hash(token))
            if change is None or change.expires_at <= now:
                return None
            user = await session.get(User, change.user_id)
            if user is None:
                return None
            if await session.scalar(select(User.id).where(
                    User.email == change.new_email, User.id != user.id)):
                raise EmailTaken(f"another account already uses {change.new_email}")
            old, user.email = user.email, change.new_email
            await session.execute(delete(EmailChange).where(EmailChange.user_id == user.id))
            # Reset links went to the old mailbox, which no longer answers for the account.
            await session.execute(delete(PasswordReset).where(PasswordReset.user_id == user.id))
            return old, user.email


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _record(user: User) -> AccountRecord:
    return AccountRecord(
        account_id=user.account_id,
        user_id=user.id,
        email=user.email,
        has_password=user.password_hash is not None,
        created_at=user.created_at,
        name=user.name,
        password_changed_at=user.password_changed_at,
    )


def _session_record(row: PortalSession, user: User) -> SessionRecord:
    return SessionRecord(
        id=row.id, user_id=user.id, account_id=user.account_id, email=user.email,
        created_at=row.created_at, last_seen_at=row.last_seen_at, expires_at=row.expires_at,
        ip=row.ip, user_agent=row.user_agent,
    )
