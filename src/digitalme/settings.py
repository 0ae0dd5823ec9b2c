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

from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
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


class EmailSettings(Section):
    enabled: bool = False
    smtp_server: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "digitalme-alerts@localhost"
    critical_alert_recipients: list[str] = Field(default_factory=list)
    standard_alert_recipients: list[str] = Field(default_factory=list)


class SlackSettings(Section):
    enabled: bool = False
    webhook_url: SecretStr | None = None
    channel: str = "#digitalme-alerts"


class SmsSettings(Section):
    enabled: bool = False
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    from_number: str | None = None
    recipients: list[str] = Field(default_factory=list)
    base_url: str = "https://api.twilio.com"


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


class NotificationSettings(Section):
    email: EmailSettings = EmailSettings()
    slack: SlackSettings = SlackSettings()
    sms: SmsSettings = SmsSettings()


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
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like '100/minute': {value!r}") from exc
        return value

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
