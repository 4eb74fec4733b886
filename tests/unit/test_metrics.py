"""runtime/metrics.py: per-integration counters stay bounded and monotonic; the
store-derived gauges give every known label a sample."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from runtime.metrics import (
    LICENSE_RATIO,
    OTHER,
    TOP_INTEGRATIONS,
    IntegrationInvoices,
    StoreFigures,
    publish_store_figures,
    zoho_error_code,
)


def _samples(collector: IntegrationInvoices) -> dict[tuple[str, str], float]:
    (family,) = list(collector.collect())
    return {(s.labels["integration"], s.labels["stage"]): s.value
            for s in family.samples if s.name.endswith("_total")}


def test_integrations_get_series_while_there_is_room_then_the_rest_is_other() -> None:
    counters = IntegrationInvoices(top=3, rerank_seconds=3600)
    for i in range(50):
        counters.count(f"uid{i:02}", "received", n=i + 1)
    samples = _samples(counters)
    assert {uid for uid, _ in samples} == {"uid00", "uid01", "uid02", OTHER}
    assert samples[("uid02", "received")] == 3
    # Every event is in exactly one series.
    assert sum(samples.values()) == sum(range(1, 51))


def test_the_busiest_take_the_series_at_a_rerank_and_every_series_stays_monotonic() -> None:
    counters = IntegrationInvoices(top=1, rerank_seconds=3600)
    counters.count("a", "fiscalized", 5)
    counters.count("b", "fiscalized", 10)
    first = _samples(counters)
    assert first == {("a", "fiscalized"): 5, (OTHER, "fiscalized"): 10}
    counters.rerank_seconds = 0  # b is the busiest: it takes the one series, from 0
    second = _samples(counters)
    assert second == {(OTHER, "fiscalized"): 10}
    counters.count("b", "fiscalized", 2)
    counters.count("a", "fiscalized", 1)  # a, without a series now, counts under other
    third = _samples(counters)
    assert third == {("b", "fiscalized"): 2, (OTHER, "fiscalized"): 11}


def test_a_declared_stage_has_a_zero_sample_before_anything_is_counted() -> None:
    counters = IntegrationInvoices()
    counters.declare("late", "written_back")
    assert _samples(counters) == {(OTHER, "late"): 0, (OTHER, "written_back"): 0}
    registry = CollectorRegistry()
    registry.register(counters)
    text = generate_latest(registry).decode()
    assert 'fiscobridge_integration_invoices_total{integration="other",stage="late"} 0.0' in text


def test_thousands_of_integrations_make_a_bounded_number_of_series() -> None:
    counters = IntegrationInvoices(rerank_seconds=0)
    for i in range(5000):
        for stage in ("received", "fiscalized"):
            counters.count(f"uid{i}", stage)
    assert len(_samples(counters)) <= (TOP_INTEGRATIONS + 1) * 2


def test_licence_ratio_shows_the_closest_to_their_limit_and_the_highest_of_the_rest() -> None:
    ratios = {f"uid{i}": i / 100 for i in range(TOP_INTEGRATIONS + 5)}
    publish_store_figures(
        StoreFigures(integrations={}, invoices={}, used={}, at_limit={}, ratios=ratios),
        tiers=["trial"], statuses=["active"], states=["fiscalized"],
    )
    shown = {s.labels["integration"]: s.value for m in LICENSE_RATIO.collect() for s in m.samples}
    assert len(shown) == TOP_INTEGRATIONS + 1
    assert shown[f"uid{TOP_INTEGRATIONS + 4}"] == (TOP_INTEGRATIONS + 4) / 100
    assert shown[OTHER] == 4 / 100


def test_zoho_statuses_become_a_bounded_set_of_codes() -> None:
    assert zoho_error_code(429) == "429"
    assert zoho_error_code(418) == "4xx" and zoho_error_code(599) == "5xx"
