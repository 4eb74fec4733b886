from collections.abc import Callable

import pytest

from services.portal.web.signing import BadToken, ExpiredToken, Signer

SECRET = b"0123456789abcdef-portal-tests"


def test_a_signed_payload_comes_back_with_its_issue_time() -> None:
    signer = Signer(SECRET, "session")
    token = signer.sign({"sid": "abc", "n": [1, 2]}, now=1000.9)
    assert signer.verify(token, max_age=60, now=1060) == {"sid": "abc", "n": [1, 2], "iat": 1000}


@pytest.mark.parametrize("tamper", [
    lambda t: t[:5] + ("A" if t[5] != "A" else "B") + t[6:],  # payload
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature
    lambda t: t.split(".")[0],  # signature dropped
    lambda t: "." + t.split(".")[1],  # payload dropped
    lambda t: t + "é",  # not ASCII
    lambda t: "",
])
def test_any_change_is_refused(tamper: Callable[[str], str]) -> None:
    signer = Signer(SECRET, "session")
    token = signer.sign({"sid": "abc"}, now=1000)
    with pytest.raises(BadToken):
        signer.verify(tamper(token), max_age=60, now=1000)


def test_a_token_of_one_purpose_is_worthless_for_another() -> None:
    session = Signer(SECRET, "session").sign({"n": "x", "i": "uid", "s": "sid"}, now=1000)
    with pytest.raises(BadToken):
        Signer(SECRET, "oauth-state").verify(session, max_age=60, now=1000)
    with pytest.raises(BadToken):
        Signer(SECRET + b"-other", "session").verify(session, max_age=60, now=1000)


def test_an_old_token_expires() -> None:
    signer = Signer(SECRET, "oauth-state")
    token = signer.sign({"n": "x"}, now=1000)
    assert signer.verify(token, max_age=600, now=1600)["n"] == "x"
    with pytest.raises(ExpiredToken):
        signer.verify(token, max_age=600, now=1601)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Signer(b"short", "session")
