"""How the Submitter spreads submissions over its HTTP clients: an idle one while there
is one, else the least busy; no I/O (the clients are never used here)."""

from __future__ import annotations

from typing import cast

import httpx
import pytest

from services.reporter.submit import Submitter


def submitter(clients: int) -> Submitter:
    pool = [cast(httpx.AsyncClient, object()) for _ in range(clients)]
    return Submitter(pool, {})


def test_each_submission_in_flight_gets_a_client_of_its_own() -> None:
    s = submitter(3)

    taken = [s._acquire() for _ in range(3)]

    assert sorted(taken) == [0, 1, 2]
    assert s._in_flight == [1, 1, 1]


def test_beyond_the_clients_the_least_busy_takes_the_next() -> None:
    s = submitter(2)
    s._acquire()
    s._acquire()
    doubled = s._acquire()  # both busy: one of them takes a second request
    assert s._in_flight[doubled] == 2 and sum(s._in_flight) == 3

    single = 1 - doubled
    s._release(single)
    assert s._acquire() == single  # idle again, so preferred over the doubled one
    s._release(doubled)
    s._acquire()  # none idle, both at one: either, as long as the load stays even
    assert sorted(s._in_flight) == [1, 2]


def test_a_client_is_idle_again_only_when_all_its_requests_ended() -> None:
    s = submitter(1)
    s._acquire()
    s._acquire()

    s._release(0)
    assert s._idle == []
    s._release(0)
    assert s._idle == [0]


def test_the_most_recently_released_client_is_reused_first() -> None:
    s = submitter(3)
    a, b = s._acquire(), s._acquire()
    s._release(a)
    s._release(b)

    assert s._acquire() == b


def test_a_submitter_needs_a_client() -> None:
    with pytest.raises(ValueError):
        submitter(0)
