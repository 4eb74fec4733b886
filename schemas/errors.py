"""The one base for errors a person acts on.

`code` is stable and machine-readable (status reasons, dead-letter headers, logs,
metrics, the portal's messages are keyed by it); `str(error)` (also `message`) tells a
person what to change. A family may fix its code per subclass (`code = "wrong_password"`)
or pass it per instance (`InvoiceRejected("unsupported_currency", "...")`).
"""

from __future__ import annotations

from typing import Any


class CodedError(Exception):
    code: str = "error"

    def __init__(self, *args: Any, code: str | None = None) -> None:
        super().__init__(*args)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)
