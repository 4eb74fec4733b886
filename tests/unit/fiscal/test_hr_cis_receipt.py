"""What hr-cis renders for the invoice's write-back (hr-fiscal-record.md, "What goes back
onto the invoice"): with the JIR, and before it (a signed invoice still retried)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from fiscal.hr_cis.authority import HrCisAuthority
from fiscal.hr_cis.qr import verification_url
from schemas.events import InvoiceRef, InvoiceState, InvoiceStatus

JIR = "3d6e4b1c-2c3f-4e0a-9f1e-7a1b2c3d4e5f"
ZKI = "e4d909c290d0fb1ca068ffaddf22cbd0"
ISSUED = datetime(2026, 12, 2, 9, 41, 7, tzinfo=UTC)  # 10:41 in Zagreb


def status(**over: Any) -> InvoiceStatus:
    base: dict[str, Any] = dict(
        integration_uid="int_1", state=InvoiceState.FISCALIZED, reason_code="ok", message="",
        invoice=InvoiceRef(source_id="4600001", number="INV-1", version="v1",
                           total=Decimal("1525.99"), issued_at=ISSUED),
        receipt_id=JIR, protection_code=ZKI, fiscal_number="57/POSL1/1",
    )
    return InvoiceStatus(**{**base, **over})


def test_before_the_jir_the_qr_carries_the_zki() -> None:
    url = verification_url(receipt_id=None, protection_code=ZKI, issued_at=ISSUED,
                           total=Decimal("1525.99"))
    assert url == f"https://porezna.gov.hr/rn?zki={ZKI}&datv=20261202_1041&izn=152599"


def test_with_the_jir_the_qr_carries_the_jir_not_the_zki() -> None:
    url = verification_url(receipt_id=JIR, protection_code=ZKI, issued_at=ISSUED,
                           total=Decimal("1525.99"))
    assert url == f"https://porezna.gov.hr/rn?jir={JIR}&datv=20261202_1041&izn=152599"


def test_a_qr_needs_the_jir_or_the_zki_and_an_aware_time() -> None:
    with pytest.raises(ValueError, match="needs the JIR or, before it, the ZKI"):
        verification_url(receipt_id=None, protection_code=None, issued_at=ISSUED,
                         total=Decimal(1))
    with pytest.raises(ValueError, match="time zone"):
        verification_url(receipt_id=None, protection_code=ZKI, issued_at=ISSUED.replace(
            tzinfo=None), total=Decimal(1))


def test_a_retried_invoice_renders_number_zki_and_the_zki_qr_without_a_jir() -> None:
    retrying = status(state=InvoiceState.RETRYING, reason_code="s006", receipt_id=None,
                      late=True)
    assert HrCisAuthority().receipt_fields(retrying) == {
        "fiscal_number": "57/POSL1/1", "zki": ZKI,
        "qr_url": f"https://porezna.gov.hr/rn?zki={ZKI}&datv=20261202_1041&izn=152599",
    }


def test_a_fiscalized_invoice_renders_all_four_with_the_jir_qr() -> None:
    assert HrCisAuthority().receipt_fields(status()) == {
        "fiscal_number": "57/POSL1/1", "zki": ZKI, "jir": JIR,
        "qr_url": f"https://porezna.gov.hr/rn?jir={JIR}&datv=20261202_1041&izn=152599",
    }


def test_without_the_moment_of_issue_or_total_there_is_no_qr() -> None:
    bare = status(receipt_id=None, state=InvoiceState.RETRYING,
                  invoice=InvoiceRef(source_id="1", number="1", version="v1"))
    assert HrCisAuthority().receipt_fields(bare) == {"fiscal_number": "57/POSL1/1",
                                                     "zki": ZKI}
