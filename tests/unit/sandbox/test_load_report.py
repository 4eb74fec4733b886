"""What the load report says about a run: percentiles, and whether a backlog grew."""

from __future__ import annotations

from sandbox.load import LoadReport, percentiles


def report(latencies: list[float]) -> LoadReport:
    n = len(latencies)
    return LoadReport(sent=n, accepted=n, refused={}, states={"fiscalized": n}, missing=0,
                      seconds=10.0, latencies=latencies)


def test_percentiles_pick_from_the_sorted_values() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentiles(values) == {50: 51.0, 95: 95.0, 99: 99.0}


def test_a_growing_backlog_shows_as_later_webhooks_waiting_longer() -> None:
    # Sent in this order: the latency climbs from 0.2 s to 1.4 s.
    lines = report([0.2 + i / 100 for i in range(120)]).lines()
    assert lines[-1] == ("  by send order    p50 400 ms for the first third sent, "
                         "1200 ms for the last third")


def test_a_pipeline_that_keeps_pace_shows_the_same_latency_throughout() -> None:
    lines = report([0.25] * 90).lines()
    assert lines[-1].endswith("p50 250 ms for the first third sent, 250 ms for the last third")


def test_too_few_webhooks_for_a_trend_print_none() -> None:
    lines = report([0.25] * 20).lines()
    assert not any("by send order" in line for line in lines)
