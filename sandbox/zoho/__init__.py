"""A faithful local stand-in for Zoho Books: OAuth (two data centres), API v3, webhooks."""
