"""Zoho Books: OAuth across data centres, the API client, incremental sync, webhooks,
mapping (`mapping/`: values, amounts, documents), the daily call budget and write-back.

Pure except `oauth`, `client`, `sync` and `writeback`, which talk HTTP through an
injected `httpx.AsyncClient` and nothing else.
"""
