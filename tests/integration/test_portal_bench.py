"""The portal benchmark runs on PostgreSQL and prints every query's figures (its speed at a
million rows is its own business: bench/portal/README.md)."""

from __future__ import annotations

import re

import pytest

from bench.portal.__main__ import _scratch

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUERIES = ("baseline: primary-key lookup", "first page (one integration)",
           "page halfway down (keyset)", "dashboard: 30 days by state",
           "dashboard: late + failed", "detail: row + history", "offset 100k")


async def test_benchmark_loads_and_times_every_query(
    postgres_admin_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    await _scratch(postgres_admin_url, 3000, 3)
    output = capsys.readouterr().out
    assert "loaded 3,000 journal rows" in output
    for name in QUERIES:
        line = next((line for line in output.splitlines() if line.startswith(name)), None)
        assert line is not None, (name, output)
        p50, p95, ratio = (float(x) for x in re.findall(r"\d+\.\d+", line[34:]))
        assert 0 < p50 <= p95 and ratio > 0, line
