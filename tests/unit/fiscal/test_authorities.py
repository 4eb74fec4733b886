"""The authority registry: an integration's authority from its fiscal settings (hr-cis when
they name none), one instance per name, and a clear error for a name nobody serves."""

from __future__ import annotations

import pytest

from fiscal.authorities import Authorities, UnknownAuthority, authority_of, split_authority
from fiscal.hr_cis.authority import HrCisAuthority


def test_settings_without_an_authority_are_cis() -> None:
    assert authority_of({"oib": "1"}) == "hr-cis"
    assert authority_of({"authority": "taxcore-vsdc"}) == "taxcore-vsdc"
    name, rest = split_authority({"authority": "taxcore-vsdc", "oib": "1"})
    assert (name, rest) == ("taxcore-vsdc", {"oib": "1"})
    assert split_authority({"oib": "1"}) == ("hr-cis", {"oib": "1"})


def test_one_instance_per_name_and_registry() -> None:
    authorities = Authorities()
    cis = authorities.get("hr-cis")
    assert isinstance(cis, HrCisAuthority) and cis.name == "hr-cis"
    assert authorities.get("hr-cis") is cis  # its certificate cache is shared
    assert Authorities().get("hr-cis") is not cis


def test_an_unknown_authority_says_which_are_known() -> None:
    with pytest.raises(UnknownAuthority, match=r"'taxcore-vsdc'.*known: hr-cis") as caught:
        Authorities().get("taxcore-vsdc")
    assert caught.value.code == "unknown_authority"
