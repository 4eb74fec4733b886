"""Zoho Books: OAuth across data centres, the API client, incremental sync, webhooks, mapping.

Pure except `oauth`, `client` and `sync`, which talk HTTP through an injected
`httpx.AsyncClient` and nothing else.
"""
