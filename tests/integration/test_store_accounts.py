"""The accounts store's sessions, throttling counts, reset tokens and names, on SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from runtime.store import InvalidInput, Store
from runtime.store.accounts import EmailTaken
from runtime.store.models import PasswordReset, PortalSession

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


async def test_a_session_lives_until_it_expires_or_is_ended(store: Store) -> None:
    account = await store.accounts.create("owner@obrt.hr", "correct horse battery")
    first_id, first = await store.accounts.start_session(
        account.user_id, now=T0, lifetime=HOUR, ip="192.0.2.7", user_agent="UA")
    second_id, second = await store.accounts.start_session(
        account.user_id, now=T0, lifetime=HOUR, ip=None, user_agent=None)
    live = await store.accounts.resolve_session(first, now=T0 + timedelta(minutes=5))
    assert live is not None and live.id == first_id and live.email == "owner@obrt.hr"
    assert live.last_seen_at == T0 + timedelta(minutes=5) and live.ip == "192.0.2.7"
    async with store.transaction() as session:  # only the token's digest is stored
        hashes = set(await session.scalars(select(PortalSession.token_hash)))
    assert first not in hashes and len(hashes) == 2

    # The most recently seen first.
    listed = await store.accounts.sessions_of(account.user_id, now=T0)
    assert [s.id for s in listed] == [first_id, second_id]
    assert await store.accounts.resolve_session(first, now=T0 + HOUR) is None  # expired
    assert await store.accounts.resolve_session(first, now=T0) is None  # and gone
    assert not await store.accounts.end_session("someone-else", second_id)
    assert await store.accounts.end_session(account.user_id, second_id)
    assert await store.accounts.resolve_session(second, now=T0) is None


async def test_a_password_change_ends_every_session_and_reset_link(store: Store) -> None:
    account = await store.accounts.create("owner@obrt.hr", "correct horse battery")
    _, token = await store.accounts.start_session(
        account.user_id, now=T0, lifetime=HOUR, ip=None, user_agent=None)
    reset = await store.accounts.start_reset("OWNER@obrt.hr", now=T0, lifetime=HOUR)
    assert reset is not None
    await store.accounts.change_password(account.user_id, "violet tugboat orchard", now=T0)
    assert await store.accounts.resolve_session(token, now=T0) is None
    assert await store.accounts.reset_user(reset, now=T0) is None
    assert await store.accounts.authenticate("owner@obrt.hr", "violet tugboat orchard")
    changed = await store.accounts.by_user(account.user_id)
    assert changed is not None and changed.password_changed_at == T0


async def test_a_reset_token_works_once_and_not_after_it_expires(store: Store) -> None:
    account = await store.accounts.create("owner@obrt.hr", "correct horse battery")
    assert await store.accounts.start_reset("nobody@obrt.hr", now=T0, lifetime=HOUR) is None
    assert await store.accounts.start_reset("not an address", now=T0, lifetime=HOUR) is None
    old = await store.accounts.start_reset("owner@obrt.hr", now=T0, lifetime=HOUR)
    token = await store.accounts.start_reset("owner@obrt.hr", now=T0, lifetime=HOUR)
    assert old is not None and token is not None
    async with store.transaction() as session:
        stored = set(await session.scalars(select(PasswordReset.token_hash)))
    assert token not in stored and old not in stored
    assert await store.accounts.reset_user(token, now=T0 + HOUR) is None  # expired
    done = await store.accounts.finish_reset(token, "violet tugboat orchard", now=T0)
    assert done is not None and done.user_id == account.user_id
    assert await store.accounts.finish_reset(token, "another one here", now=T0) is None
    assert await store.accounts.reset_user(old, now=T0) is None  # the others went too


async def test_failures_are_counted_per_scope_and_key_within_the_window(store: Store) -> None:
    for minutes in (0, 5, 10):
        await store.accounts.record_failure("account", "a@obrt.hr", now=T0 + timedelta(
            minutes=minutes))
    await store.accounts.record_failure("ip", "192.0.2.7", now=T0)
    count, oldest = await store.accounts.recent_failures(
        "account", "a@obrt.hr", since=T0 + timedelta(minutes=1))
    assert (count, oldest) == (2, T0 + timedelta(minutes=5))
    assert (await store.accounts.recent_failures("account", "b@obrt.hr", since=T0))[0] == 0
    await store.accounts.forget_failures_before(("account",), T0 + timedelta(minutes=5))
    assert (await store.accounts.recent_failures(
        "account", "a@obrt.hr", since=T0 - HOUR))[0] == 1
    assert (await store.accounts.recent_failures("ip", "192.0.2.7", since=T0 - HOUR))[0] == 1
    await store.accounts.clear_failures("account", "a@obrt.hr")
    assert (await store.accounts.recent_failures(
        "account", "a@obrt.hr", since=T0 - HOUR))[0] == 0


async def test_name_and_email_changes(store: Store) -> None:
    account = await store.accounts.create("owner@obrt.hr", "correct horse battery")
    await store.accounts.create("taken@obrt.hr", "correct horse battery")
    await store.accounts.set_name(account.user_id, "  Ana Horvat ")
    with pytest.raises(InvalidInput, match="at most 200"):
        await store.accounts.set_name(account.user_id, "x" * 201)
    with pytest.raises(EmailTaken):
        await store.accounts.change_email(account.user_id, "Taken@obrt.hr")
    with pytest.raises(InvalidInput, match="not an e-mail address"):
        await store.accounts.change_email(account.user_id, "nope")
    assert await store.accounts.change_email(account.user_id, "Ana@Obrt.hr") == "ana@obrt.hr"
    changed = await store.accounts.by_user(account.user_id)
    assert changed is not None and (changed.name, changed.email) == ("Ana Horvat",
                                                                     "ana@obrt.hr")
    assert await store.accounts.check_password(account.user_id, "correct horse battery")
    assert not await store.accounts.check_password(account.user_id, "wrong")
