"""Outages: one warning when a name starts failing, one info line when it recovers."""

from __future__ import annotations

from structlog.testing import capture_logs

from digitalme.monitoring.outages import Outages


def test_each_outage_is_logged_once_and_its_end_once() -> None:
    outages = Outages("test", failed="thing_failed", recovered="thing_recovered", key="thing")
    with capture_logs() as logs:
        outages.recovered("a")  # never failed: nothing to say
        outages.failed("a", "ConnectionError")
        outages.failed("a", "ConnectionError")
        outages.failed("b", "TimeoutError")
        outages.recovered("a")
        outages.recovered("a")
        outages.failed("a", "OSError")  # a new outage
    assert [(e["event"], e["thing"], e.get("error")) for e in logs] == [
        ("thing_failed", "a", "ConnectionError"),
        ("thing_failed", "b", "TimeoutError"),
        ("thing_recovered", "a", None),
        ("thing_failed", "a", "OSError"),
    ]


def test_recovery_can_go_unlogged() -> None:
    outages = Outages("test", failed="section_failed", key="section")
    with capture_logs() as logs:
        outages.failed("s", "ValueError")
        outages.recovered("s")
        outages.failed("s", "ValueError")
    assert [e["event"] for e in logs] == ["section_failed", "section_failed"]
