"""Accounting systems: each connector maps its source's invoices to the canonical Invoice."""
