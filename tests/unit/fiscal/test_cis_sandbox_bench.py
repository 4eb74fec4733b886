"""The sandbox's per-operation CPU benchmark runs and reports every step."""

from __future__ import annotations

import re

import pytest

from bench.cis_sandbox.micro import STEPS, main


def test_benchmark_reports_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--seconds", "0.2"])
    output = capsys.readouterr().out
    figures = dict(re.findall(r"^\s+(\w+)\s+(\d+\.\d+)$", output, flags=re.MULTILINE))
    assert set(figures) == set(STEPS)
    assert all(float(ms) > 0 for ms in figures.values())
