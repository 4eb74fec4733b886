"""Shared fixtures: each real part (broker, database, sandboxes) has a module of its own."""

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.certs",
    "tests.fixtures.cis",
    "tests.fixtures.store",
    "tests.fixtures.zoho",
]
