from typing import Any

import pytest

from fiscal.hr_cis.settings import FiscalSettings
from services.portal.web.upload import SETTINGS_REFUSED, UploadRefused, check_upload
from tests.fixtures.certs import OPERATOR_OIB, Pfx


def _fields(oib: str, **overrides: Any) -> dict[str, Any]:
    return {"oib": oib, "premises_code": "POSL1", "device_code": "12",
            "operator_oib": OPERATOR_OIB, "sequence_mark": "P", "in_vat_system": True,
            **overrides}


def test_a_good_upload_gives_settings_and_certificate(demo_pfx: Pfx, demo_oib: str) -> None:
    settings, certificate = check_upload(_fields(demo_oib), demo_pfx.data, demo_pfx.password)
    assert isinstance(settings, FiscalSettings) and settings.premises_code == "POSL1"
    assert certificate.oib == demo_oib


@pytest.mark.parametrize(("case", "field", "code"), [
    ("wrong_password", "password", "wrong_password"),
    ("expired", "pfx", "certificate_expired"),
    ("other_oib", "pfx", "oib_mismatch"),
])
def test_certificate_refusals_name_the_field_and_the_reason(
    demo_pfx: Pfx, expired_pfx: Pfx, demo_oib: str, case: str, field: str, code: str
) -> None:
    pfx, password, oib = demo_pfx.data, demo_pfx.password, demo_oib
    if case == "wrong_password":
        password = "nope"
    elif case == "expired":
        pfx = expired_pfx.data
    else:
        oib = OPERATOR_OIB
    with pytest.raises(UploadRefused) as refused:
        check_upload(_fields(oib), pfx, password)
    assert refused.value.code == code and list(refused.value.problems) == [field]
    assert str(refused.value).startswith(f"certificate refused ({code}): ")
    assert demo_pfx.password not in str(refused.value)


def test_settings_are_checked_first_and_every_bad_field_is_named(demo_pfx: Pfx) -> None:
    with pytest.raises(UploadRefused) as refused:
        check_upload(_fields("12345678901", device_code="012", premises_code=""),
                     demo_pfx.data, demo_pfx.password)
    assert refused.value.code == SETTINGS_REFUSED
    assert set(refused.value.problems) == {"oib", "device_code", "premises_code"}
    assert str(refused.value).startswith("fiscal settings refused: ")
    assert "valid OIB" in refused.value.problems["oib"]
