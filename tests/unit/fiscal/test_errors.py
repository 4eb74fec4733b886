"""The CIS error-code table against the specification it comes from."""

from __future__ import annotations

import re

import pytest

from fiscal.hr_cis.errors import TABLE, Permanence, classify
from tests.unit.fiscal.conftest import SPEC_DIR


def codes_listed_in_the_spec() -> set[str]:
    text = (SPEC_DIR / "spec-v2.6.txt").read_text(encoding="utf-8")
    # Code lists are table rows starting with the code, e.g. "s003* Certifikat ..." or
    # "v100 'Poruka je ispravna'"; a code may also stand alone on its row.
    return set(re.findall(r"^\s*([sv]\d{3})\*?(?:\s|$)", text, flags=re.MULTILINE))


@pytest.mark.parametrize("code", ["s001", "s002", "s003", "s004", "s005"])
def test_refusals_that_need_a_person_are_permanent(code: str) -> None:
    assert classify(code).permanence is Permanence.PERMANENT


def test_a_system_error_is_transient() -> None:
    error = classify("s006")
    assert error.permanence is Permanence.TRANSIENT
    assert "system error" in error.meaning.lower()


def test_every_code_the_spec_lists_is_classified() -> None:
    listed = codes_listed_in_the_spec()
    assert {"s001", "s006", "s012", "s124", "v100", "v168"} <= listed  # the parse found them
    assert listed - TABLE.keys() == set()


def test_every_code_says_what_it_means_and_what_to_do() -> None:
    for code, error in TABLE.items():
        assert error.code == code
        assert error.meaning.strip() and error.action.strip(), code


def test_only_the_system_error_is_worth_retrying() -> None:
    transient = {code for code, e in TABLE.items() if e.permanence is Permanence.TRANSIENT}
    assert transient == {"s006"}


def test_actions_tell_a_person_what_to_do() -> None:
    assert "certificate" in classify("s002").action.lower()
    assert "oib" in classify("s005").action.lower()


def test_codes_are_read_as_the_service_may_write_them() -> None:
    assert classify(" S006 ").permanence is Permanence.TRANSIENT
    assert classify("S002") == classify("s002")


@pytest.mark.parametrize("code", ["s999", "e001", "x"])
def test_an_unknown_code_is_permanent_and_says_it_is_unknown(code: str) -> None:
    error = classify(code)
    assert error.permanence is Permanence.PERMANENT
    assert error.code == code
    assert "unknown" in error.meaning.lower()


def test_a_missing_code_is_unknown_too() -> None:
    error = classify("")
    assert error.permanence is Permanence.PERMANENT
    assert error.code == "(no code)"


@pytest.mark.parametrize("code", [f"s{n:03d}" for n in range(7, 14)])
def test_the_2026_answers_s007_to_s013_are_classified_permanent(code: str) -> None:
    error = classify(code)
    assert error.code == code
    assert error.permanence is Permanence.PERMANENT
    assert "unknown" not in error.meaning.lower()


@pytest.mark.parametrize("code", ["s007", "s011"])
def test_a_change_after_the_day_of_issue_says_to_storno_and_reissue(code: str) -> None:
    action = classify(code).action.lower()
    assert "midnight" in action or "only" in action
    assert "storno" in action and "new invoice" in action


@pytest.mark.parametrize("code", ["s008", "s012"])
def test_a_change_that_does_not_match_says_what_must_match(code: str) -> None:
    action = classify(code).action.lower()
    assert "jir" in action and "zki" in action and "total" in action


def test_a_restrictive_error_sends_the_person_to_the_message() -> None:
    error = classify("s013")
    assert "restrictive" in error.meaning.lower() and "2026" in error.meaning
    assert "error message" in error.action.lower()
