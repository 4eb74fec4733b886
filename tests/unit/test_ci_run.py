""".ci/run sets CI, so a CI run without PostgreSQL fails instead of skipping those cases."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures import store as store_fixtures

ROOT = Path(__file__).resolve().parents[2]


def test_ci_run_exports_ci_to_setup_and_to_the_test_command(tmp_path: Path) -> None:
    # A copy of the real .ci/run in a stand-in checkout: a setup.sh and a README whose
    # test command only record what CI was when each of them ran.
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "setup.sh").write_text('echo "${CI-unset}" > setup-saw\n')
    (tmp_path / "README.md").write_text(
        "# x\n\n<!-- test-command -->\n```\necho \"${CI-unset}\" > command-saw\n```\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    result = subprocess.run(
        ["bash", str(tmp_path / ".ci" / "run")], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "setup-saw").read_text().strip() == "1"
    assert (tmp_path / "command-saw").read_text().strip() == "1"


def test_missing_postgres_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is required under CI"):
        store_fixtures._unavailable("no initdb")


def test_missing_postgres_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL unavailable"):
        store_fixtures._unavailable("no initdb")
