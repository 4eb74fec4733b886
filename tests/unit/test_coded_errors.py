"""One coded-error base: each family keeps its codes and messages, and what callers
catch (ValueError) still catches them."""

from __future__ import annotations

import pytest

from connectors.zoho.mapping.values import InvoiceMappingError
from fiscal.hr_cis.certificate import CertificateError, WrongPassword
from fiscal.hr_cis.rejection import InvoiceRejected
from schemas.errors import CodedError
from services.fiscalizer.directory import IntegrationUnusable


@pytest.mark.parametrize(("error", "code", "message"), [
    (InvoiceRejected("unsupported_currency", "use EUR"), "unsupported_currency", "use EUR"),
    (InvoiceMappingError("no_date", "set the date", field="date"), "no_date", "set the date"),
    (WrongPassword("the password does not open it"), "wrong_password",
     "the password does not open it"),
    (CertificateError("bad"), "certificate_error", "bad"),
    (IntegrationUnusable("integration u1 no longer exists in the store"),
     "integration_unusable", "integration u1 no longer exists in the store"),
])
def test_code_and_message(error: CodedError, code: str, message: str) -> None:
    assert isinstance(error, CodedError)
    assert error.code == code
    assert str(error) == error.message == message
    assert error.args == (message,)


def test_value_errors_stay_value_errors() -> None:
    for error in (InvoiceRejected("c", "m"), InvoiceMappingError("c", "m"), WrongPassword("m")):
        assert isinstance(error, ValueError)
    assert InvoiceMappingError("c", "m", field="f").field == "f"
    assert CodedError("m", code="x").code == "x"
    assert CodedError().code == "error"
