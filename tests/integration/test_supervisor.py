"""`runtime.supervisor.Supervisor` over real child processes: a killed child comes back
(new pid, counted, said so), backoff grows for a crash loop and resets after a good run,
and `stop()` leaves no child, grandchild or SIGTERM-deaf child behind."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.supervisor import Child, Supervisor


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie (nobody reaped it yet) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _child(name: str, tmp_path: Path, script: str) -> Child:
    return Child(name, [sys.executable, "-c", textwrap.dedent(script)],
                 log_path=tmp_path / f"{name}.log")


async def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.05)


def _pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _sleeper(pids: Path, prelude: str = "") -> str:
    """Runs `prelude`, appends its pid to `pids`, sleeps."""
    return prelude + textwrap.dedent(f"""
        import os, time
        with open({str(pids)!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        time.sleep(600)
    """)


async def test_a_killed_child_is_restarted_and_stop_ends_every_child(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pids = {name: tmp_path / f"{name}.pids" for name in ("a", "b", "deaf")}
    grandchild = tmp_path / "grandchild.pid"
    children = [
        _child("a", tmp_path, _sleeper(pids["a"])),
        _child("b", tmp_path, _sleeper(pids["b"], textwrap.dedent(f"""
            import subprocess, sys
            g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            open({str(grandchild)!r}, "w").write(str(g.pid))
        """))),
        _child("deaf", tmp_path, _sleeper(pids["deaf"], textwrap.dedent("""
            import signal
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        """))),
    ]
    supervisor = Supervisor(children, initial_backoff=0.1, grace=2.0)
    running = asyncio.create_task(supervisor.run())
    try:
        await _until(lambda: all(_pids(p) for p in pids.values()) and grandchild.exists())
        first = {c.name: c.process.pid for c in children if c.process}
        assert {name: _pids(p) for name, p in pids.items()} == {k: [v] for k, v in first.items()}

        a = children[0]
        assert a.process is not None
        a.process.send_signal(signal.SIGKILL)
        await _until(lambda: len(_pids(pids["a"])) == 2)
        assert a.process is not None and a.process.returncode is None
        assert a.process.pid == _pids(pids["a"])[1] != first["a"]
        assert a.restarts == 1
        assert [c.restarts for c in children[1:]] == [0, 0]
        assert {c.name: c.process.pid for c in children[1:] if c.process} == {
            "b": first["b"], "deaf": first["deaf"]}
        err = capsys.readouterr().err
        assert "[dev] a crashed (killed by SIGKILL); restarting in 0.1s (restart #1)" in err
        assert f"[dev] a restarted as pid {a.process.pid} (restart #1)" in err
    finally:
        supervisor.stop()
        await asyncio.wait_for(running, 30)

    everyone = [pid for p in pids.values() for pid in _pids(p)] + [int(grandchild.read_text())]
    assert not [pid for pid in everyone if _alive(pid)]
    assert all(c.process and c.process.returncode is not None for c in children)
    assert "[dev] deaf did not stop within 2s; killing" in capsys.readouterr().err


async def test_b_backoff_grows_while_crashing_and_resets_after_a_good_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pids = tmp_path / "flaky.pids"
    # Crashes at once on its first four runs, then runs fine.
    flaky = _child("flaky", tmp_path, f"""
        import os, sys, time
        with open({str(pids)!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        if len(open({str(pids)!r}).read().split()) <= 4:
            sys.exit(3)
        time.sleep(600)
    """)
    supervisor = Supervisor([flaky], max_backoff=0.4, initial_backoff=0.1, reset_after=1.5)
    running = asyncio.create_task(supervisor.run())
    try:
        await _until(lambda: len(_pids(pids)) == 5 and flaky.restarts == 4)
        err = capsys.readouterr().err
        delays = [f"[dev] flaky crashed (exit code 3); restarting in {d} (restart #{n})"
                  for n, d in enumerate(["0.1s", "0.2s", "0.4s", "0.4s"], 1)]
        assert [line for line in err.splitlines() if "restarting in" in line] == delays
        await asyncio.sleep(2.0)  # a good run, longer than reset_after
        assert flaky.process is not None and flaky.process.returncode is None
        flaky.process.send_signal(signal.SIGKILL)
        await _until(lambda: len(_pids(pids)) == 6 and flaky.restarts == 5)
        assert ("[dev] flaky crashed (killed by SIGKILL); restarting in 0.1s (restart #5)"
                in capsys.readouterr().err)
    finally:
        supervisor.stop()
        await asyncio.wait_for(running, 30)
    assert not [pid for pid in _pids(pids) if _alive(pid)]


async def test_c_stop_during_a_crash_loop_starts_nothing_more(tmp_path: Path) -> None:
    pids = tmp_path / "loop.pids"
    # Exits as soon as it has said who it is, over and over: stop() lands mid-restart.
    looping = _child("loop", tmp_path, f"""
        import os, time
        with open({str(pids)!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        time.sleep(0.05)
    """)
    supervisor = Supervisor([looping], max_backoff=0.01, initial_backoff=0.01)
    running = asyncio.create_task(supervisor.run())
    await _until(lambda: looping.restarts >= 5)
    supervisor.stop()
    await asyncio.wait_for(running, 30)
    started = _pids(pids)
    await asyncio.sleep(1.0)
    assert _pids(pids) == started  # nothing started after run() returned
    assert not [pid for pid in started if _alive(pid)]
    assert looping.process is not None and looping.process.returncode is not None
