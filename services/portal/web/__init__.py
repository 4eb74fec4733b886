"""The Client Portal web app: accounts, integrations, the Zoho connect flow.

Kept free of imports so that `services.portal.web.upload` (shared with the CLI) loads
without the web stack.
"""
