"""Accounts (a business) and their users (people who log in to the portal)."""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from runtime.store.models import Account, User
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


class Accounts(Repository):
    async def create(
        self, email: str, password: str | None = None, *, name: str | None = None
    ) -> AccountRecord:
        email = normalize_email(email)
        now = datetime.now(UTC)
        async with self._tx() as session:
            if await session.scalar(select(User.id).where(User.email == email)):
                raise InvalidInput(f"an account for {email} already exists")
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
    )
