"""Rules saved through the API survive a restart and merge with the default and file rules."""

from __future__ import annotations

from pathlib import Path

from digitalme.monitoring.alerts import StoredRule
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.storage import TelemetryStore, upgrade_async
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import load_settings

RULE = {
    "id": "checkout_latency",
    "name": "Slow checkout",
    "metric_name": "http.server.duration",
    "operator": ">",
    "threshold": 1500,
}


async def test_saved_rules_are_loaded_at_start(tmp_path: Path, clock: FakeClock) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'telemetry.db'}"
    await upgrade_async(url)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        "rules:\n  - {id: from_file, name: F, metric_name: m, operator: '>', threshold: 1}\n"
    )
    settings = load_settings(
        server={"data_dir": str(tmp_path)}, alerting={"rule_files": [str(rules_file)]}
    )
    store = TelemetryStore(url, clock=clock)
    try:
        first = Monitoring(settings, clock=clock, store=store, strict=True)
        assert first.rule_catalog is not None
        await first.rule_catalog.create(RULE, "ops@example.com")
        await first.rule_catalog.replace(
            "from_file",
            {"name": "F", "metric_name": "m", "operator": ">", "threshold": 5},
            "ops@example.com",
        )
        # a stored rule that no longer validates is skipped, not fatal
        assert first.alerts is not None
        await first.alerts.store.save_rule(
            StoredRule(
                id="broken", definition={"id": "broken"}, enabled=True, updated_at=clock.now()
            )
        )

        second = Monitoring(settings, clock=clock, store=store, strict=True)
        assert second.alerts is not None
        assert "checkout_latency" not in [rule.id for rule in second.alerts.rules]
        await second.start()
        try:
            rules = {rule.id: rule for rule in second.alerts.rules}
            assert rules["checkout_latency"].threshold == 1500
            assert rules["from_file"].threshold == 5
            assert "http_latency_p95" in rules
            assert "broken" not in rules
            assert second.rule_catalog is not None
            assert second.rule_catalog.describe(rules["from_file"])["overrides"] == "file"
        finally:
            await second.stop()
    finally:
        await store.close()
