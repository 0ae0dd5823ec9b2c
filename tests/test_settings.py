"""Settings: precedence, validation messages that name the key, secrets kept secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from digitalme.settings import ConfigError, Environment, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("DIGITALME"):
            monkeypatch.delenv(name)


def test_defaults_run_embedded() -> None:
    settings = load_settings()
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.database_url == "sqlite+aiosqlite:///var/digitalme.db"
    assert settings.redis_url is None
    assert settings.claude.api_key is None
    assert settings.security.rate_limit_per_ip == "100/minute"
    assert settings.custom_telemetry.sensitive_data_fields[-1] == "apikey"


def test_environment_beats_yaml_beats_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "digitalme.yaml"
    config.write_text(
        "auth:\n  lockout_threshold: 7\n  issuer: from-yaml\n"
        "notifications:\n  slack:\n    channel: '#ops'\n"
    )
    monkeypatch.setenv("DIGITALME__AUTH__LOCKOUT_THRESHOLD", "9")
    settings = load_settings(config)
    assert settings.auth.lockout_threshold == 9
    assert settings.auth.issuer == "from-yaml"
    assert settings.notifications.slack.channel == "#ops"
    assert settings.auth.lockout_duration == 900


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  port: 9001\n")
    monkeypatch.setenv("DIGITALME_CONFIG", str(config))
    assert load_settings().server.port == 9001


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"DIGITALME__SERVER__PORT": "99999"}, "server.port"),
        ({"DIGITALME__SECURITY__RATE_LIMIT_PER_IP": "lots"}, "security.rate_limit_per_ip"),
        ({"DIGITALME__SECURITY__TRUSTED_PROXIES": '["not-an-ip"]'}, "security.trusted_proxies"),
        ({"DIGITALME__TELEMETRY__SAMPLING_PERCENTAGE": "150"}, "telemetry.sampling_percentage"),
        ({"DIGITALME__AUTH__JWT_SECRET": "short-s3cret"}, "auth.jwt_secret"),
        ({"DIGITALME__ENVIRONMENT": "Moon"}, "environment"),
        ({"DIGITALME__HEALTH__PROBE_INTERVAL": "0"}, "health.probe_interval"),
        ({"DIGITALME__HEALTH__CACHE_SECONDS": "-1"}, "health.cache_seconds"),
        ({"DIGITALME__HEALTH__RATE_LIMIT_PER_IP": "lots"}, "health.rate_limit_per_ip"),
        (
            {"DIGITALME__HEALTH__PROCESS__LOOP_LAG_UNHEALTHY_MS": "50"},
            "health.process: loop_lag_unhealthy_ms must be greater than loop_lag_degraded_ms",
        ),
        ({"DIGITALME__HEALTH__CLAUDE__SLOW_THRESHOLD": "0"}, "health.claude.slow_threshold"),
        (
            {"DIGITALME__HEALTH__URLS": '[{"name": "cdn", "url": "ftp://cdn.example"}]'},
            "health.urls.0.url",
        ),
        (
            {"DIGITALME__HEALTH__URLS": '[{"name": "Bad Name", "url": "https://x.example"}]'},
            "health.urls.0.name",
        ),
        (
            {
                "DIGITALME__HEALTH__URLS": '[{"name": "cdn", "url": "https://x.example", '
                '"failure_status": "Broken"}]'
            },
            "health.urls.0.failure_status",
        ),
        (
            {"DIGITALME__HEALTH__URLS": '[{"name": "database", "url": "https://x.example"}]'},
            "health.urls: 'database' is the name of a built-in check",
        ),
        (
            {
                "DIGITALME__HEALTH__URLS": '[{"name": "cdn", "url": "https://a.example"}, '
                '{"name": "cdn", "url": "https://b.example"}]'
            },
            "health.urls: two checks are named 'cdn'",
        ),
    ],
)
def test_invalid_values_name_the_key_and_never_the_value(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], key: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert key in message
    assert "\n" not in message
    assert "short-s3cret" not in message


def test_unknown_key_in_yaml_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("auth:\n  lockout_treshold: 3\n")
    with pytest.raises(ConfigError, match=r"auth\.lockout_treshold"):
        load_settings(config)


def test_production_requires_a_jwt_secret() -> None:
    with pytest.raises(ConfigError, match=r"auth\.jwt_secret"):
        load_settings(environment="Production")


def test_secrets_are_masked_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITALME__CLAUDE__API_KEY", "sk-ant-very-secret")
    monkeypatch.setenv(
        "DIGITALME__CONNECTION_STRINGS__DATABASE", "postgresql+asyncpg://u:pw-123@h/db"
    )
    monkeypatch.setenv("DIGITALME__NOTIFICATIONS__SMS__AUTH_TOKEN", "twilio-token-xyz")
    settings = load_settings()
    text = repr(settings) + str(settings) + str(settings.model_dump())
    for secret in ("sk-ant-very-secret", "pw-123", "twilio-token-xyz"):
        assert secret not in text
    assert settings.claude.api_key is not None
    assert settings.claude.api_key.get_secret_value() == "sk-ant-very-secret"


def test_health_defaults_and_an_empty_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    health = load_settings().health
    assert (health.probe_interval, health.cache_seconds, health.show_details) == (10.0, 5.0, False)
    assert health.rate_limit_per_ip == "60/minute"
    assert health.claude.slow_threshold == 10.0
    assert health.urls == []
    monkeypatch.setenv("DIGITALME__HEALTH__RATE_LIMIT_PER_IP", "")
    assert load_settings().health.rate_limit_per_ip is None


def test_url_checks_from_yaml(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "health:\n  urls:\n    - name: status-page\n      url: https://status.example/ok\n"
        "      expected_status: 204\n      failure_status: Unhealthy\n"
    )
    [check] = load_settings(config).health.urls
    assert (check.name, check.expected_status, check.failure_status) == (
        "status-page",
        204,
        "Unhealthy",
    )
    assert (check.timeout, check.tags) == (5.0, ["external"])
