"""How an existing topic is judged against its registry entry, and how the outcome reads."""

from __future__ import annotations

from runtime.kafka.admin import TopicOutcome, TopicsReport, topic_problems
from schemas.events import Event
from schemas.topics import DAY_MS, INVOICES_RECEIVED, Topic

MATCHING = {"retention.ms": str(14 * DAY_MS), "cleanup.policy": "delete"}


def test_a_matching_topic_has_no_problems() -> None:
    assert topic_problems(INVOICES_RECEIVED, 12, MATCHING) == []


def test_extra_broker_settings_are_not_drift() -> None:
    assert topic_problems(INVOICES_RECEIVED, 12, {**MATCHING, "segment.bytes": "1024"}) == []


def test_partition_mismatch_names_expected_and_actual() -> None:
    [problem] = topic_problems(INVOICES_RECEIVED, 6, MATCHING)
    assert "has 6 partitions" in problem
    assert "expects 12" in problem


def test_retention_drift_names_both_values() -> None:
    [problem] = topic_problems(INVOICES_RECEIVED, 12, {**MATCHING, "retention.ms": "1000"})
    assert "retention.ms" in problem
    assert "'1000'" in problem
    assert repr(str(14 * DAY_MS)) in problem


def test_cleanup_policy_drift_is_reported() -> None:
    [problem] = topic_problems(INVOICES_RECEIVED, 12, {**MATCHING, "cleanup.policy": "compact"})
    assert "cleanup.policy is 'compact'" in problem


def test_list_valued_settings_compare_regardless_of_order() -> None:
    topic = Topic("t", Event, 1, retention_ms=1, cleanup_policy="compact,delete")
    actual = {"retention.ms": "1", "cleanup.policy": "delete, compact"}
    assert topic_problems(topic, 1, actual) == []


def test_a_setting_the_broker_did_not_return_is_drift() -> None:
    [problem] = topic_problems(INVOICES_RECEIVED, 12, {"cleanup.policy": "delete"})
    assert "retention.ms is None" in problem


def test_every_problem_is_listed_not_just_the_first() -> None:
    problems = topic_problems(INVOICES_RECEIVED, 3, {"retention.ms": "1", "cleanup.policy": "x"})
    assert len(problems) == 3


def test_report_without_changes_says_ok() -> None:
    report = TopicsReport((TopicOutcome("a", "ok"), TopicOutcome("b", "ok")))
    assert report.ok and not report.changed
    assert report.summary().startswith("ok:")
    assert "nothing changed" in report.summary()


def test_report_with_creations_lists_them() -> None:
    report = TopicsReport((TopicOutcome("a", "created"), TopicOutcome("b", "ok")))
    assert report.ok and report.changed
    assert report.created == ("a",)


def test_any_error_fails_the_report_and_is_described_with_its_topic() -> None:
    bad = TopicOutcome("b", "error", ("has 2 partitions, registry expects 3",))
    report = TopicsReport((TopicOutcome("a", "created"), bad))
    assert not report.ok
    assert report.errors == (bad,)
    assert bad.describe() == "ERROR    b: has 2 partitions, registry expects 3"
    assert "1 of 2" in report.summary()


def test_missing_is_not_an_error() -> None:
    assert TopicsReport((TopicOutcome("a", "missing"),)).ok
