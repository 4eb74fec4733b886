"""Which implementation of the authority seam (fiscal/authority.py) serves which name.

An integration's authority is the `authority` key of its fiscal settings ("hr-cis"
when absent: every integration before the seam is CIS's); a signed event names it in
`profile`. The services ask an `Authorities` registry and never import an authority's
package themselves (tests/unit/test_import_rules.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fiscal.authority import Authority
from fiscal.hr_cis.soap import AnswerVerifier as CisAnswerVerifier
from fiscal.hr_cis.soap import CisSigner
from schemas.errors import CodedError

# CisSigner and CisAnswerVerifier: the CIS channel's trust, which the reporter builds
# from its settings (services/reporter/trust.py).

__all__ = ["DEFAULT_AUTHORITY", "Authorities", "CisAnswerVerifier", "CisSigner",
           "UnknownAuthority", "authority_of", "split_authority"]

DEFAULT_AUTHORITY = "hr-cis"
AUTHORITY_KEY = "authority"


def _hr_cis() -> Authority:
    from fiscal.hr_cis.authority import HrCisAuthority

    return HrCisAuthority()


FACTORIES: dict[str, Callable[[], Authority]] = {DEFAULT_AUTHORITY: _hr_cis}


class UnknownAuthority(CodedError, LookupError):
    code = "unknown_authority"


def authority_of(fiscal_settings: Mapping[str, Any]) -> str:
    """The authority an integration's fiscal settings name ("hr-cis" when they name none)."""
    return str(fiscal_settings.get(AUTHORITY_KEY) or DEFAULT_AUTHORITY)


def split_authority(fiscal_settings: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The authority's name, and the settings without it (what the authority validates)."""
    rest = dict(fiscal_settings)
    name = rest.pop(AUTHORITY_KEY, None)
    return str(name or DEFAULT_AUTHORITY), rest


class Authorities:
    """One instance of each authority per registry (each keeps its own caches, e.g. of
    loaded certificates), made when first asked for."""

    def __init__(self, factories: Mapping[str, Callable[[], Authority]] | None = None) -> None:
        self._factories = dict(FACTORIES if factories is None else factories)
        self._made: dict[str, Authority] = {}

    def register(self, name: str, factory: Callable[[], Authority]) -> None:
        self._factories[name] = factory
        self._made.pop(name, None)

    def get(self, name: str) -> Authority:
        made = self._made.get(name)
        if made is not None:
            return made
        factory = self._factories.get(name)
        if factory is None:
            known = ", ".join(sorted(self._factories)) or "none"
            raise UnknownAuthority(
                f"no tax authority {name!r} is known to FiscoBridge (known: {known}); set the"
                " integration's fiscal settings `authority` to one of them"
            )
        made = self._made[name] = factory()
        return made
