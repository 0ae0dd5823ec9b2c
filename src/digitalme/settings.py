"""One typed settings tree for the whole service.

Sources, highest precedence first:

1. environment variables ``DIGITALME__SECTION__KEY`` (for example
   ``DIGITALME__AUTH__LOCKOUT_THRESHOLD=10``);
2. an optional YAML file (``--config`` or ``DIGITALME_CONFIG``);
3. defaults that run embedded (SQLite under ``./var/``, no Redis, no external service).

The sections mirror the plan's ``appsettings.json`` (ConnectionStrings, Telemetry,
CustomTelemetry, Notifications) plus Auth, Security, Claude and Server. Keys are
snake_case here; the README maps them to the plan's names.

This is the only module that reads the process environment.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "DIGITALME__"

_T = TypeVar("_T")


class Environment(StrEnum):
    """Where the service runs; Production hides test-only routes and requires real secrets."""

    DEVELOPMENT = "Development"
    STAGING = "Staging"
    PRODUCTION = "Production"


class Role(StrEnum):
    """User roles, lowest privilege first."""

    USER = "User"
    ADMIN = "Admin"
    SUPER_ADMIN = "SuperAdmin"


class Section(BaseModel):
    """Base of every section: unknown keys are mistakes, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    data_dir: Path = Path("var")
    shutdown_timeout: int = Field(
        default=10,
        ge=1,
        le=600,
        description="seconds open responses (live streams) get before shutdown cuts them",
    )


class ConnectionStrings(Section):
    """Connection strings; the database URL defaults to a SQLite file under the data dir."""

    database: SecretStr | None = None
    telemetry_store: SecretStr | None = Field(
        default=None, description="telemetry store URL; SQLite under data_dir when unset"
    )
    redis: SecretStr | None = None
    application_insights: SecretStr | None = None
    otlp_endpoint: str | None = None


class RetentionSettings(Section):
    """How long the telemetry store keeps each kind of data, in days."""

    raw_items_days: float = Field(default=7.0, gt=0, le=3650)
    buckets_10s_days: float = Field(default=2.0, gt=0, le=3650)
    buckets_1m_days: float = Field(default=30.0, gt=0, le=3650)
    buckets_5m_days: float = Field(default=90.0, gt=0, le=3650)
    buckets_1h_days: float = Field(default=400.0, gt=0, le=3650)
    interval: float = Field(default=300.0, ge=1, le=86400, description="seconds between runs")


class TelemetrySettings(Section):
    enabled: bool = True
    enable_adaptive_sampling: bool = True
    sampling_percentage: float = Field(default=100.0, gt=0.0, le=100.0)
    adaptive_target_items_per_second: float = Field(default=200.0, gt=0, le=1_000_000)
    enable_performance_counters: bool = True
    system_sample_interval: float = Field(default=10.0, ge=0.1, le=3600, description="seconds")
    enable_dependency_tracking: bool = True
    flush_interval: float = Field(default=1.0, gt=0.0, le=300.0, description="seconds")
    aggregation_tick: float = Field(default=0.25, ge=0.01, le=10.0, description="seconds")
    bucket_seconds: int = Field(default=10, ge=1, le=3600)
    live_window_seconds: int = Field(default=900, ge=60, le=86400)
    buffer_size: int = Field(default=100_000, ge=100, le=10_000_000)
    max_series_per_metric: int = Field(default=1000, ge=1, le=1_000_000)
    max_property_length: int = Field(default=1000, ge=16, le=1_000_000)
    retention: RetentionSettings = RetentionSettings()


class CustomTelemetrySettings(Section):
    global_properties: dict[str, str] = Field(default_factory=dict)
    sensitive_data_fields: list[str] = Field(
        default_factory=lambda: ["password", "token", "key", "secret", "authorization", "apikey"]
    )


class ChannelName(StrEnum):
    """The notification channels; routing lists and alert rules name them."""

    EMAIL = "email"
    SLACK = "slack"
    SMS = "sms"
    WEBHOOK = "webhook"


_EMAIL_ADDRESS = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+$")
_E164_NUMBER = re.compile(r"^\+[1-9][0-9]{6,14}$")


def _required_when_enabled(value: _T, info: ValidationInfo, section: str) -> _T:
    """``value`` unless it is missing while the channel is enabled.

    Checked per field (with ``validate_default``) so that the error names the key.
    """
    if info.data.get("enabled") and not value:
        raise ValueError(f"required when {section}.enabled is true")
    return value


def _check_http_url(url: str) -> None:
    """Raise (without echoing the URL, which may embed a token) unless it is http(s) with a host."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")


def _check_secret_url(
    value: SecretStr | None, info: ValidationInfo, section: str
) -> SecretStr | None:
    value = _required_when_enabled(value, info, section)
    if value is not None:
        _check_http_url(value.get_secret_value())
    return value


class EmailSettings(Section):
    """Alert emails over SMTP (``notifications.email``).

    Critical alerts go to ``critical_alert_recipients`` and the others to
    ``standard_alert_recipients``; when the list an alert needs is empty it goes
    to the other one, so an enabled channel always reaches someone.
    """

    enabled: bool = False
    smtp_server: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="STARTTLS upgrade, implicit TLS (port 465), or plain"
    )
    username: str | None = None
    password: SecretStr | None = Field(default=None, validate_default=True)
    sender: str = "digitalme-alerts@localhost"
    critical_alert_recipients: list[str] = Field(default_factory=list, max_length=100)
    standard_alert_recipients: list[str] = Field(
        default_factory=list, max_length=100, validate_default=True
    )
    ca_file: FilePath | None = Field(
        default=None, description="PEM bundle of extra CAs to trust (a private relay)"
    )
    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds per message")

    @field_validator("password")
    @classmethod
    def _login_pair(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if info.data.get("username") and not value:
            raise ValueError("required when notifications.email.username is set")
        if value and not info.data.get("username"):
            raise ValueError("set without notifications.email.username")
        if value and info.data.get("security") == "none":
            # A password must not cross the network in clear text.
            raise ValueError("needs notifications.email.security starttls or tls")
        return value

    @field_validator("sender")
    @classmethod
    def _sender_address(cls, value: str) -> str:
        if not _EMAIL_ADDRESS.match(value):
            raise ValueError("must be an email address like alerts@example.com")
        return value

    @field_validator("critical_alert_recipients", "standard_alert_recipients")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _EMAIL_ADDRESS.match(address):
                raise ValueError(f"not an email address: {address!r}")
        return value

    @field_validator("standard_alert_recipients")
    @classmethod
    def _someone(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if (
            info.data.get("enabled")
            and not value
            and not info.data.get("critical_alert_recipients")
        ):
            raise ValueError(
                "required (or critical_alert_recipients) when notifications.email.enabled is true"
            )
        return value


class SlackSettings(Section):
    """Alerts to a Slack incoming webhook (``notifications.slack``)."""

    enabled: bool = False
    webhook_url: SecretStr | None = Field(
        default=None, validate_default=True, description="secret: the URL embeds a token"
    )
    channel: str = Field(
        default="#digitalme-alerts",
        description="honoured by legacy webhooks (empty: left out); app webhooks ignore it",
    )
    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds")

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        return _check_secret_url(value, info, "notifications.slack")


class SmsSettings(Section):
    """Critical alerts by SMS through Twilio's Messages API (``notifications.sms``)."""

    enabled: bool = False
    account_sid: str | None = Field(default=None, validate_default=True, pattern=r"^[A-Za-z0-9]+$")
    auth_token: SecretStr | None = Field(default=None, validate_default=True)
    from_number: str | None = Field(
        default=None, validate_default=True, description="E.164 number or sender id"
    )
    recipients: list[str] = Field(default_factory=list, max_length=20, validate_default=True)
    base_url: str = "https://api.twilio.com"
    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds per message")

    @field_validator("account_sid", "auth_token", "from_number")
    @classmethod
    def _required(cls, value: _T, info: ValidationInfo) -> _T:
        return _required_when_enabled(value, info, "notifications.sms")

    @field_validator("recipients")
    @classmethod
    def _numbers(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for number in _required_when_enabled(value, info, "notifications.sms"):
            if not _E164_NUMBER.match(number):
                raise ValueError(f"not an E.164 phone number like +15551234567: {number!r}")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        _check_http_url(value)
        return value.rstrip("/")


class WebhookSettings(Section):
    """Alerts as Alertmanager-format (version 4) JSON to any URL (``notifications.webhook``)."""

    enabled: bool = False
    url: SecretStr | None = Field(
        default=None, validate_default=True, description="secret: such URLs often embed a token"
    )
    secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key; when set every request is signed"
    )
    receiver: str = Field(default="digitalme", description="the payload's receiver name")
    external_url: str = Field(default="", description="the payload's externalURL")
    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds")

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        return _check_secret_url(value, info, "notifications.webhook")

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value


class RoutingSettings(Section):
    """Which channels get an alert, by severity (``notifications.routing``).

    A rule's own channel list overrides these. SMS carries Critical alerts only,
    whatever a list says. ``webhook`` is in every list so that, once enabled, the
    system it feeds sees everything (as an Alertmanager receiver would).
    """

    critical: list[ChannelName] = Field(default_factory=lambda: list(ChannelName))
    high: list[ChannelName] = Field(
        default_factory=lambda: [ChannelName.EMAIL, ChannelName.SLACK, ChannelName.WEBHOOK]
    )
    medium: list[ChannelName] = Field(
        default_factory=lambda: [ChannelName.SLACK, ChannelName.WEBHOOK]
    )
    low: list[ChannelName] = Field(default_factory=lambda: [ChannelName.SLACK, ChannelName.WEBHOOK])
    resolved: list[ChannelName] = Field(
        default_factory=lambda: [ChannelName.SLACK, ChannelName.WEBHOOK]
    )
    resolved_to_firing_channels: bool = Field(
        default=False, description="resolved notices go where the firing one went"
    )


class MetricsEndpointSettings(Section):
    """Prometheus scraping of ``/metrics``."""

    enabled: bool = True
    public: bool = Field(default=False, description="answer anyone, without a token")
    scrape_token: SecretStr | None = Field(
        default=None, description="static bearer token for Prometheus (besides admin tokens)"
    )
    port: int | None = Field(
        default=None, ge=1, le=65535, description="serve it on this port instead of the app's"
    )

    @field_validator("scrape_token")
    @classmethod
    def _token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value


class DeliverySettings(Section):
    """The dispatcher that sends the outbox (``notifications.delivery``)."""

    poll_interval: float = Field(
        default=5.0, gt=0, le=60, description="seconds between looks at the outbox"
    )
    max_attempts: int = Field(default=8, ge=1, le=100, description="attempts before dead")
    backoff_base: float = Field(default=1.0, gt=0, le=3600, description="seconds")
    backoff_max: float = Field(default=300.0, gt=0, le=86400, description="seconds")
    claim_lease: float = Field(
        default=60.0, gt=0, le=3600, description="seconds a claimed delivery is held"
    )
    batch_size: int = Field(default=100, ge=1, le=10_000, description="deliveries in flight")

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> Self:
        if self.backoff_max < self.backoff_base:
            raise ValueError("backoff_max must be at least backoff_base")
        return self


class NotificationSettings(Section):
    """Alert notification channels and the routing of alerts to them."""

    email: EmailSettings = EmailSettings()
    slack: SlackSettings = SlackSettings()
    sms: SmsSettings = SmsSettings()
    webhook: WebhookSettings = WebhookSettings()
    routing: RoutingSettings = RoutingSettings()
    delivery: DeliverySettings = DeliverySettings()

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Self:
        # A send still running when its claim expires could be claimed and sent twice.
        lease = self.delivery.claim_lease
        for name in ("email", "slack", "sms", "webhook"):
            channel = getattr(self, name)
            if channel.enabled and channel.timeout >= lease:
                raise ValueError(
                    f"notifications.delivery.claim_lease ({lease:g} s) must be longer than "
                    f"notifications.{name}.timeout ({channel.timeout:g} s)"
                )
        return self


class AuthSettings(Section):
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HS256 key; when unset outside Production one is generated under data_dir",
    )
    issuer: str = "digitalme"
    audience: str = "digitalme-api"
    token_lifetime: float = Field(default=3600.0, gt=0, le=7 * 86400, description="seconds")
    lockout_threshold: int = Field(default=5, ge=1, le=100)
    lockout_duration: float = Field(default=900.0, gt=0, le=86400, description="seconds")

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value


def _check_rate_limit(value: str) -> str:
    """``value`` if it is a ``limits`` rate limit (``"100/minute"``, several joined by ``;``)."""
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError as exc:
        raise ValueError(f"not a rate limit like '100/minute': {value!r}") from exc
    return value


class SecuritySettings(Section):
    rate_limit_enabled: bool = True
    rate_limit_per_ip: str = "100/minute"
    rate_limit_per_user: str = "300/minute"
    body_size_limit: int = Field(default=1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    trusted_proxies: list[str] = Field(
        default_factory=list, description="IPs or CIDR networks allowed to set X-Forwarded-For"
    )
    threat_detection_enabled: bool = True

    @field_validator("rate_limit_per_ip", "rate_limit_per_user")
    @classmethod
    def _rate_limit_syntax(cls, value: str) -> str:
        return _check_rate_limit(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"not an IP address or network: {item!r}") from exc
        return value


class ClaudeSettings(Section):
    api_key: SecretStr | None = None
    model: str = "claude-sonnet-4-5"
    base_url: str | None = None
    timeout: float = Field(default=60.0, gt=0, le=600, description="seconds")
    max_retries: int = Field(default=2, ge=0, le=10)
    max_tokens: int = Field(default=1024, ge=1, le=64000)


# Names of the built-in health checks; configured URL checks may not take them.
BUILT_IN_CHECK_NAMES = frozenset({"database", "telemetry-store", "redis", "claude-api", "process"})
CHECK_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class UrlCheckSettings(Section):
    """One outgoing HTTP GET watched by the health checks (``health.urls``)."""

    name: str = Field(pattern=CHECK_NAME_PATTERN, description="check name in the reports")
    url: str = Field(description="http(s) URL to GET")
    expected_status: int = Field(default=200, ge=100, le=599)
    timeout: float = Field(default=5.0, gt=0, le=120, description="seconds")
    failure_status: Literal["Degraded", "Unhealthy"] = "Degraded"
    tags: list[str] = Field(default_factory=lambda: ["external"])

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value


class ProcessCheckSettings(Section):
    """Thresholds of the ``process`` health check."""

    enabled: bool = True
    loop_lag_degraded_ms: float = Field(default=100.0, gt=0, le=60_000)
    loop_lag_unhealthy_ms: float = Field(default=1000.0, gt=0, le=600_000)
    min_free_disk_mb: float = Field(default=500.0, ge=0, description="under it: Degraded")
    min_free_disk_percent: float = Field(
        default=5.0, ge=0, le=100, description="under it: Degraded"
    )
    max_rss_mb: float | None = Field(default=2048.0, gt=0, description="over it: Degraded")

    @model_validator(mode="after")
    def _lag_thresholds_in_order(self) -> Self:
        if self.loop_lag_unhealthy_ms <= self.loop_lag_degraded_ms:
            raise ValueError("loop_lag_unhealthy_ms must be greater than loop_lag_degraded_ms")
        return self


class ClaudeCheckSettings(Section):
    """The ``claude-api`` health check: one cheap real call (``GET /v1/models/{model}``)."""

    enabled: bool = True
    slow_threshold: float = Field(default=10.0, gt=0, le=600, description="seconds")
    timeout: float = Field(default=20.0, gt=0, le=600, description="seconds")
    min_interval: float = Field(
        default=60.0, ge=0, le=86400, description="seconds between real calls"
    )


class HealthSettings(Section):
    """Health checks, the ``/health`` endpoints and the background prober."""

    probe_interval: float = Field(default=10.0, ge=0.05, le=3600, description="seconds")
    prober_enabled: bool = True
    cache_seconds: float = Field(default=5.0, ge=0, le=3600)
    check_timeout: float = Field(default=5.0, gt=0, le=600, description="seconds")
    show_details: bool = False
    rate_limit_per_ip: str | None = "60/minute"
    history_size: int = Field(default=1000, ge=1, le=1_000_000)
    telemetry_store_check: bool = True
    redis_check: bool = True
    process: ProcessCheckSettings = ProcessCheckSettings()
    claude: ClaudeCheckSettings = ClaudeCheckSettings()
    urls: list[UrlCheckSettings] = Field(default_factory=list, max_length=100)

    @field_validator("rate_limit_per_ip")
    @classmethod
    def _rate_limit_syntax(cls, value: str | None) -> str | None:
        # Empty (what an environment variable can say) or null: no limit of their own.
        return _check_rate_limit(value) if value else None

    @field_validator("urls")
    @classmethod
    def _unique_names(cls, value: list[UrlCheckSettings]) -> list[UrlCheckSettings]:
        seen: set[str] = set()
        for check in value:
            if check.name in BUILT_IN_CHECK_NAMES:
                raise ValueError(f"{check.name!r} is the name of a built-in check")
            if check.name in seen:
                raise ValueError(f"two checks are named {check.name!r}")
            seen.add(check.name)
        return value


class AlertRuleOverride(Section):
    """Changes to one shipped default alert rule (``alerting.defaults.<rule id>``).

    Only the keys given change the rule; durations take seconds or ``"5m"``.
    Values are validated like any rule when the alert engine starts.
    """

    enabled: bool | None = None
    threshold: float | None = None
    clear_threshold: float | None = None
    evaluation_window: float | str | None = None
    min_data_points: int | None = None
    min_duration: float | str | None = None
    keep_firing_for: float | str | None = None
    repeat_interval: float | str | None = None
    severity: str | None = None
    notification_channels: list[str] | None = None


class AlertingSettings(Section):
    """The alert engine: rule files, the shipped defaults, security alerts, bounds."""

    enabled: bool = True
    tick: float = Field(default=0.25, ge=0.01, le=60, description="seconds between evaluations")
    rule_files: list[Path] = Field(default_factory=list, max_length=100)
    defaults: dict[str, AlertRuleOverride] = Field(default_factory=dict)
    security_alerts: bool = True
    security_group_window: float = Field(default=300.0, gt=0, le=86400, description="seconds")
    security_repeat_interval: float | None = Field(
        default=3600.0, gt=0, le=7 * 86400, description="seconds; null: never repeat"
    )
    resolve_mute: float = Field(default=3600.0, ge=0, le=7 * 86400, description="seconds")
    max_active_alerts: int = Field(default=10_000, ge=10, le=1_000_000)


class DashboardSettings(Section):
    """The admin metrics API (bounds on what one query may ask for), the live hub and the
    web dashboard page."""

    page_enabled: bool = Field(
        default=True, description="serve the web dashboard at /dashboard (admins sign in)"
    )

    max_window: float = Field(
        default=7 * 86400.0,
        ge=60,
        le=366 * 86400,
        description="seconds; the longest time range a query may cover",
    )
    max_points: int = Field(
        default=1000, ge=10, le=100_000, description="points in one series at most"
    )
    apdex_threshold_ms: float = Field(
        default=500.0,
        gt=0,
        description="ms; the Apdex target T: a request is satisfied within T, tolerating within 4T",
    )
    slow_query_ms: float = Field(
        default=100.0, gt=0, description="ms; a database query taking longer is slow"
    )
    snapshot_interval: float = Field(
        default=2.0,
        ge=0.1,
        le=3600,
        description="seconds between two MetricsSnapshot messages of the live hub",
    )
    max_connections: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="live hub clients (WebSocket and SSE) at once; more are refused",
    )
    client_stall_timeout: float = Field(
        default=30.0,
        ge=0.1,
        le=3600,
        description="seconds a live hub client may leave its full queue unread before "
        "it is disconnected",
    )


TIER_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"


class BurnRateTier(Section):
    """One multiwindow burn-rate alert: it fires while the error budget burns at least
    ``factor`` times the sustainable rate over both ``long_window`` and ``short_window``."""

    name: str = Field(pattern=TIER_NAME_PATTERN, description="the alert rule is slo_burn_<name>")
    factor: float = Field(gt=0, le=10_000)
    long_window: float = Field(ge=60, le=30 * 86400, description="seconds")
    short_window: float = Field(ge=60, le=30 * 86400, description="seconds")
    severity: Literal["Critical", "High", "Medium", "Low"] = "Critical"

    @model_validator(mode="after")
    def _short_inside_long(self) -> Self:
        if self.short_window >= self.long_window:
            raise ValueError("short_window must be shorter than long_window")
        return self


def _workbook_tiers() -> list[BurnRateTier]:
    # The SRE workbook's multiwindow, multi-burn-rate tiers for a 30-day SLO.
    return [
        BurnRateTier(name="page_fast", factor=14.4, long_window=3600, short_window=300),
        BurnRateTier(name="page_slow", factor=6.0, long_window=21600, short_window=1800),
        BurnRateTier(
            name="ticket_fast", factor=3.0, long_window=86400, short_window=7200, severity="Medium"
        ),
        BurnRateTier(
            name="ticket_slow", factor=1.0, long_window=259200, short_window=21600, severity="Low"
        ),
    ]


class SloSettings(Section):
    """The availability objective: ``target`` percent of ``window_days``, measured on one
    component's heartbeats (``overall``: the worst of all checks) from one source."""

    target: float = Field(default=99.5, gt=0, lt=100, description="percent")
    window_days: float = Field(default=30.0, ge=1, le=365, description="rolling window")
    component: str = Field(default="overall", pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    source: Literal["inside", "outside"] = Field(
        default="inside",
        description="inside: this service's own prober; outside: `digitalme watch`",
    )
    evaluation_interval: float = Field(
        default=10.0, ge=0.05, le=3600, description="seconds between burn-rate computations"
    )
    burn_rate_alerts: bool = True
    tiers: list[BurnRateTier] = Field(default_factory=_workbook_tiers, max_length=20)

    @field_validator("tiers")
    @classmethod
    def _unique_names(cls, tiers: list[BurnRateTier]) -> list[BurnRateTier]:
        names = [tier.name for tier in tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        return tiers


class UptimeRetentionSettings(Section):
    """How long heartbeats and their buckets are kept, in days."""

    heartbeats_days: float = Field(default=30.0, gt=0, le=3650)
    minute_buckets_days: float = Field(default=14.0, ge=2, le=3650)
    hour_buckets_days: float = Field(default=400.0, ge=8, le=3650)
    day_buckets_days: float = Field(default=3650.0, ge=366, le=36500)
    incidents_days: float = Field(default=3650.0, ge=1, le=36500)


class StatusPageSettings(Section):
    """The public status page (``/status``, ``/api/status``, ``/api/status/badge.svg``)."""

    enabled: bool = True
    title: str = Field(default="DigitalMe status", min_length=1, max_length=100)
    components: dict[str, str] = Field(
        default_factory=dict,
        max_length=100,
        description="check name -> public name; empty: every check under its own name",
    )
    hidden: list[str] = Field(default_factory=list, max_length=100, description="checks not shown")
    source: Literal["inside", "outside"] = "inside"
    cache_seconds: float = Field(default=10.0, ge=0, le=3600)


class UptimeSettings(Section):
    """Heartbeats, uptime windows, incidents, the SLO and the status page."""

    enabled: bool = True
    unknown: Literal["down", "excluded"] = Field(
        default="down", description="time without heartbeats: counted as down, or left out"
    )
    unknown_after_intervals: float = Field(
        default=3.0,
        ge=1,
        le=100,
        description="a gap between heartbeats longer than this many probe intervals is unknown",
    )
    slo: SloSettings = SloSettings()
    retention: UptimeRetentionSettings = UptimeRetentionSettings()
    status_page: StatusPageSettings = StatusPageSettings()
    retention_interval: float = Field(default=3600.0, ge=1, le=86400, description="seconds")


class ClusterSettings(Section):
    """Several instances on one PostgreSQL (and Redis): who leads, and how they talk.

    Every instance with a telemetry store takes part in an election through a
    lease in the store's database; the holder runs the alert engine and the
    notification dispatcher. With ``connection_strings.redis`` set, the live hub
    shares its messages through Redis pub/sub (``backplane_channel``).
    """

    instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="this instance's label on telemetry; host-pid-random when unset",
    )
    lease_seconds: float = Field(
        default=10.0, ge=1.0, le=300.0, description="leader lease; a dead leader is replaced after"
    )
    remote_poll_interval: float = Field(
        default=0.25,
        ge=0.05,
        le=60.0,
        description="seconds between the leader's reads of the other instances' buckets",
    )
    command_timeout: float = Field(
        default=15.0,
        ge=1.0,
        le=300.0,
        description="seconds an admin change on a follower waits for the leader to apply it",
    )
    backplane: bool = True
    backplane_channel: str = Field(default="digitalme:hub", min_length=1, max_length=200)


class Settings(BaseSettings):
    """The whole configuration tree."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    environment: Environment = Environment.DEVELOPMENT
    server: ServerSettings = ServerSettings()
    connection_strings: ConnectionStrings = ConnectionStrings()
    telemetry: TelemetrySettings = TelemetrySettings()
    custom_telemetry: CustomTelemetrySettings = CustomTelemetrySettings()
    metrics: MetricsEndpointSettings = MetricsEndpointSettings()
    notifications: NotificationSettings = NotificationSettings()
    auth: AuthSettings = AuthSettings()
    security: SecuritySettings = SecuritySettings()
    claude: ClaudeSettings = ClaudeSettings()
    health: HealthSettings = HealthSettings()
    alerting: AlertingSettings = AlertingSettings()
    dashboard: DashboardSettings = DashboardSettings()
    uptime: UptimeSettings = UptimeSettings()
    cluster: ClusterSettings = ClusterSettings()

    @model_validator(mode="after")
    def _production_needs_real_secret(self) -> Self:
        if self.environment is Environment.PRODUCTION and self.auth.jwt_secret is None:
            raise ValueError("auth.jwt_secret must be set when environment is Production")
        return self

    @property
    def database_url(self) -> str:
        """The host database URL (SQLite file under the data dir unless configured)."""
        if self.connection_strings.database is not None:
            return self.connection_strings.database.get_secret_value()
        return f"sqlite+aiosqlite:///{self.server.data_dir / 'digitalme.db'}"

    @property
    def telemetry_store_url(self) -> str:
        """The telemetry store URL (its own SQLite file under the data dir unless configured)."""
        if self.connection_strings.telemetry_store is not None:
            return self.connection_strings.telemetry_store.get_secret_value()
        return f"sqlite+aiosqlite:///{self.server.data_dir / 'telemetry.db'}"

    @property
    def redis_url(self) -> str | None:
        value = self.connection_strings.redis
        return None if value is None else value.get_secret_value()


class BootstrapSettings(BaseSettings):
    """Single-underscore variables used by the command line before the tree is loaded."""

    model_config = SettingsConfigDict(env_prefix="DIGITALME_", extra="ignore")

    config: Path | None = None
    admin_email: str = "admin@localhost"
    admin_password: SecretStr | None = None


class ConfigError(Exception):
    """The configuration is invalid; ``str()`` is one line naming the key and the problem."""


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load settings from env, then the YAML file, then defaults.

    ``overrides`` win over everything (tests and the CLI use them). Raises
    :class:`ConfigError` with a message that never contains the offending value,
    so secrets cannot leak through it.
    """
    if config_file is None:
        config_file = BootstrapSettings().config
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file not found: {config_file}")
    yaml_file = config_file

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
            if yaml_file is not None:
                sources += (YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),)
            return sources

    try:
        loaded = _Loaded(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except Exception as exc:  # YAML syntax errors and the like
        raise ConfigError(f"cannot read configuration: {type(exc).__name__}: {exc}") from None
    return loaded


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, ``key: reason``, without the input value."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        key = ".".join(str(part) for part in error["loc"]) or "settings"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{key}: {message}")
    return "invalid configuration: " + "; ".join(parts)
