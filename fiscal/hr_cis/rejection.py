"""Why an invoice cannot be fiscalized as it stands: a code for machines, a sentence for people.

The error is the authority seam's own (fiscal/authority.py), so the services catch it
without knowing which authority raised it.
"""

from __future__ import annotations

from fiscal.authority import InvoiceRejected

__all__ = ["InvoiceRejected"]
