"""The signing benchmark runs and reports every figure (its speed is its own business)."""

from __future__ import annotations

import re

import pytest

from bench.signing.__main__ import main


def test_benchmark_reports_both_rates_and_the_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--seconds", "0.3"])
    output = capsys.readouterr().out
    for label in ("bare signxml", "profile build+ZKI+sign", "ratio profile/bare", "ceiling"):
        assert label in output
    rates = [float(rate) for rate in re.findall(r"(\d+) msg/s", output)]
    assert len(rates) == 3 and all(rate > 0 for rate in rates)
