"""CPU per invoice of the three XML-signature steps every pipeline invoice pays for.

    python -m bench.cis_sandbox.micro [--seconds S] [--profile]
    python bench/cis_sandbox/micro.py --against /path/to/other/tree [--rounds N]

  * check:  the sandbox reading a `racuni` request: open the SOAP envelope, then
            RequestChecks.check (schema, signature, trust, OIB, fields);
  * sign:   the sandbox's signed RacunOdgovor with a JIR (AnswerSigner.racun_answer);
  * verify: the reporter reading that answer (parse_racun_answer with an
            AnswerVerifier pinning the sandbox's answer certificate).

Every call gets a request or answer of its own (distinct IdPoruke, JIR, ZKI), as in
the pipeline, so nothing keyed on the document can make repeats look cheap; the
certificates are the same every time, as they are in the pipeline.

Each step is timed in this thread's CPU time in interleaved short rounds and reported
as the fastest round, per call (see bench.signing for why: on a shared machine other
work only ever slows a round down).

`--against TREE` compares this checkout with another one (say a pristine copy of
HEAD): it runs itself in child processes with PYTHONPATH pointed at each tree in
turn, alternating, and prints each tree's fastest figure per step. Only public APIs
that both trees have are used.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROUND_CALLS = 10
STEPS = ("check", "sign", "verify")


def _steps(count: int) -> dict[str, Callable[[], object]]:
    """The three steps over `count` distinct invoices, each call taking the next."""
    from bench.cis_sandbox.__main__ import OIB, OPERATOR, fiscal_number, invoice
    from fiscal.hr_cis.certificate import load_certificate
    from fiscal.hr_cis.profile import HrCisProfile
    from fiscal.hr_cis.settings import FiscalSettings
    from fiscal.hr_cis.soap import (
        AnswerVerifier,
        CisSigner,
        open_envelope,
        parse_racun_answer,
        racuni_envelope,
    )
    from sandbox.cis.app import CisSandbox
    from sandbox.cis.ca import TestCA
    from sandbox.cis.checks import default_spec_dir

    ca = TestCA.create()
    certificate = load_certificate(ca.issue_pfx(OIB, "bench"), "bench")
    settings = FiscalSettings(
        oib=OIB, premises_code="POSL1", device_code="1", operator_oib=OPERATOR
    )
    profile = HrCisProfile()
    signed = [profile.sign(invoice(n), settings, certificate, number=fiscal_number(n))
              for n in range(1, count + 1)]
    requests = [racuni_envelope(s.document) for s in signed]
    message_ids = [s.message_id for s in signed]
    jirs = [str(uuid.uuid4()) for _ in signed]

    sandbox = CisSandbox.create(ca, default_spec_dir())
    checks, signer = sandbox.checks, sandbox.signer
    now = datetime.now(UTC)
    answers = [signer.racun_answer(m, now, jir=j) for m, j in zip(message_ids, jirs, strict=True)]
    verifier = AnswerVerifier(CisSigner.pinned(sandbox.service_certificate))
    position = {"check": 0, "sign": 0, "verify": 0}

    def next_index(step: str) -> int:
        index = position[step]
        position[step] = (index + 1) % count
        return index

    def check() -> object:
        index = next_index("check")
        accepted = checks.check(open_envelope(requests[index]), now)
        assert accepted.message_id == message_ids[index]
        return accepted

    def sign() -> object:
        index = next_index("sign")
        return signer.racun_answer(message_ids[index], now, jir=jirs[index])

    def verify() -> object:
        index = next_index("verify")
        result = parse_racun_answer(
            answers[index], verifier, expected_message_id=message_ids[index]
        )
        assert result.jir == jirs[index]
        return result

    return {"check": check, "sign": sign, "verify": verify}


def _timed(step: Callable[[], object], calls: int) -> float:
    start = time.thread_time()
    for _ in range(calls):
        step()
    return time.thread_time() - start


def measure(seconds: float, count: int = 200) -> dict[str, float]:
    """Fastest round's CPU seconds per call of each step."""
    steps = _steps(count)
    for step in steps.values():  # warm-up: caches, lazily built schemas
        _timed(step, ROUND_CALLS * 3)
    fastest = dict.fromkeys(steps, float("inf"))
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds == 0 or time.perf_counter() < deadline:
        for name, step in steps.items():
            fastest[name] = min(fastest[name], _timed(step, ROUND_CALLS))
        rounds += 1
    return {name: elapsed / ROUND_CALLS for name, elapsed in fastest.items()}


def _child(tree: Path, seconds: float) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    output = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", "--seconds", str(seconds)],
        env=env,
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return figures


def compare(other: Path, rounds: int, seconds: float) -> None:
    here = Path(__file__).resolve().parents[2]
    trees = {"other": other.resolve(), "this": here}
    best = {label: dict.fromkeys(STEPS, float("inf")) for label in trees}
    for number in range(rounds):
        for label, tree in trees.items():
            figures = _child(tree, seconds)
            for step in STEPS:
                best[label][step] = min(best[label][step], figures[step])
            shown = "  ".join(f"{step} {figures[step] * 1e3:.3f}" for step in STEPS)
            print(f"round {number + 1} {label:5}  {shown}  ms", flush=True)
    print(f"fastest of {rounds} rounds, CPU ms per call (other = {trees['other']})")
    for step in STEPS:
        old, new = best["other"][step], best["this"][step]
        print(f"  {step:6}  other {old * 1e3:7.3f}  this {new * 1e3:7.3f}  ({new / old - 1:+.0%})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="measuring time per run")
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=5, help="runs per tree with --against")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.against is not None:
        compare(args.against, args.rounds, args.seconds)
        return
    figures = measure(args.seconds)
    if args.child:
        print(json.dumps(figures))
        return
    print("CPU ms per call, fastest round of", ROUND_CALLS, "calls")
    for name, seconds in figures.items():
        print(f"  {name:6} {seconds * 1e3:7.3f}")
    if args.profile:
        steps = _steps(50)
        for name, step in steps.items():
            profiler = cProfile.Profile(time.thread_time)
            profiler.enable()
            _timed(step, 300)
            profiler.disable()
            print(f"--- {name}")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
