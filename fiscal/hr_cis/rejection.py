"""Why an invoice cannot be fiscalized as it stands: a code for machines, a sentence for people."""

from __future__ import annotations

from schemas.errors import CodedError


class InvoiceRejected(CodedError, ValueError):
    """The invoice's data cannot become a valid CIS message; retrying will not help.

    `code` is stable (e.g. "no_invoice_number_digits", "unsupported_currency");
    `str()` tells a person what to change in the accounting system.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)
