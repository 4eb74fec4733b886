"""The portal's password policy: long enough, not common, not breached, not the e-mail.

The list of common and breached passwords ships in `data/common-passwords.txt.gz`
(see data/README.md for where it comes from). Comparison ignores case, as the list is
lowercased: "Password123" is as guessable as "password123". A listed password with
digits or symbols appended ("sunshine2024!") is refused too: that is the first variation
a guessing attack tries.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

MIN_LENGTH = 10
# argon2 hashes any length, but a megabyte password is a denial of service, not a secret.
MAX_LENGTH = 200
LIST_FILE = Path(__file__).parent / "data" / "common-passwords.txt.gz"
_SUFFIX_CHARACTERS = "0123456789!@#$%^&*()_+-=.,?~ "


@functools.cache
def common_passwords() -> frozenset[str]:
    with gzip.open(LIST_FILE, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip() for line in lines if line.strip())


def problem(password: str, *, email: str = "") -> str | None:
    """What is wrong with `password` as a sentence for the form, or None if it is fine."""
    if len(password) < MIN_LENGTH:
        return f"Choose a password of at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Choose a password of at most {MAX_LENGTH} characters."
    folded = password.lower()
    listed = common_passwords()
    if folded in listed or folded.strip() in listed:
        return ("This password is on the list of the 20,000 most common passwords found in "
                "data breaches, so it is among the first an attacker tries. Choose another.")
    stem = folded.rstrip(_SUFFIX_CHARACTERS)
    if len(stem) >= 4 and stem in listed:
        return (f"This password is the common password \"{stem}\" with digits or symbols "
                "added, a variation attackers try early. Choose another.")
    local = email.strip().lower().partition("@")[0]
    if len(local) >= 4 and local in folded:
        return "The password must not contain your e-mail address. Choose another."
    if len(set(password)) < 4:
        return "This password repeats too few characters to be hard to guess. Choose another."
    return None
