"""Login with lockout, and authentication of requests by bearer token or API key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from digitalme.host.auth import api_keys
from digitalme.host.auth.passwords import hash_password, needs_rehash, verify_password
from digitalme.host.auth.tokens import TokenError, TokenProblem, TokenService
from digitalme.host.errors import Locked, Unauthorized
from digitalme.host.models import ApiKey, User
from digitalme.host.security_events import SecurityEvent, SecurityEvents, SecurityEventType
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.dashboard.security import (
    CREDENTIAL_METRIC,
    LOGIN_METRIC,
    CredentialOutcome,
    LoginOutcome,
)
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.settings import AuthSettings, Role


class AuthMethod(StrEnum):
    TOKEN = "token"
    API_KEY = "api_key"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is making the request."""

    user_id: int
    role: Role
    method: AuthMethod
    api_key_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role in (Role.ADMIN, Role.SUPER_ADMIN)


@dataclass(frozen=True, slots=True)
class RequestCredentials:
    """What a request presented, read from its headers."""

    bearer: str | None
    api_key: str | None
    client_ip: str
    path: str


_INVALID_LOGIN = "invalid email or password"


class AuthService:
    """Checks passwords (with lockout), tokens and API keys; reports security events.

    With ``telemetry`` it also counts every login attempt (``auth.logins`` by
    ``outcome``) and every request that presents credentials (``auth.requests`` by
    ``method`` and ``outcome``): successes are no security events, and the admin
    dashboard counts them too. Metric dimensions never carry who it was.
    """

    def __init__(
        self,
        settings: AuthSettings,
        tokens: TokenService,
        events: SecurityEvents,
        clock: Clock,
        telemetry: TelemetryClient | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self._events = events
        self._clock = clock
        self._telemetry = telemetry

    async def login(
        self, session: AsyncSession, email: str, password: str, client_ip: str
    ) -> tuple[str, User]:
        """Return a token for valid credentials.

        Raises Unauthorized for a wrong email or password and Locked while the
        account is locked; a locked account gets 423 whether or not the password
        is right, so the lock cannot be used to guess it.
        """
        now = self._clock.now()
        user = await session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is not None and user.locked_until is not None and user.locked_until > now:
            self._emit(
                SecurityEventType.ACCOUNT_LOCKOUT,
                "login attempt on a locked account",
                client_ip,
                user.id,
            )
            self._count_login(LoginOutcome.LOCKED)
            retry = max(1, int((user.locked_until - now).total_seconds()))
            raise Locked("account temporarily locked", headers={"Retry-After": str(retry)})
        if not verify_password(user.password_hash if user else None, password) or user is None:
            if user is not None:
                await self._record_failure(session, user, client_ip)
            self._emit(
                SecurityEventType.LOGIN_FAILED,
                "invalid email or password",
                client_ip,
                user.id if user else None,
            )
            self._count_login(LoginOutcome.FAILED)
            raise Unauthorized(_INVALID_LOGIN, code="invalid_credentials")
        user.failed_attempts = 0
        user.locked_until = None
        user.last_login_date = now
        if needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        await session.commit()
        self._count_login(LoginOutcome.SUCCEEDED)
        return self.tokens.issue(user.id, Role(user.role)), user

    def _count_login(self, outcome: LoginOutcome) -> None:
        if self._telemetry is not None:
            self._telemetry.track_metric(LOGIN_METRIC, 1.0, {"outcome": outcome.value})

    def _count_credentials(self, method: AuthMethod, outcome: CredentialOutcome) -> None:
        if self._telemetry is not None:
            self._telemetry.track_metric(
                CREDENTIAL_METRIC, 1.0, {"method": method.value, "outcome": outcome.value}
            )

    async def _record_failure(self, session: AsyncSession, user: User, client_ip: str) -> None:
        user.failed_attempts += 1
        if user.failed_attempts >= self.settings.lockout_threshold:
            user.failed_attempts = 0
            user.locked_until = self._clock.now() + timedelta(
                seconds=self.settings.lockout_duration
            )
            self._emit(
                SecurityEventType.ACCOUNT_LOCKOUT,
                f"locked after {self.settings.lockout_threshold} failed logins",
                client_ip,
                user.id,
            )
        await session.commit()

    async def authenticate(self, session: AsyncSession, creds: RequestCredentials) -> Principal:
        """The principal behind the request's credentials, or Unauthorized (with an event)."""
        if creds.bearer is not None or creds.api_key is not None:
            method = AuthMethod.TOKEN if creds.bearer is not None else AuthMethod.API_KEY
            try:
                if method is AuthMethod.TOKEN:
                    principal = await self._from_token(session, creds)
                else:
                    principal = await self._from_api_key(session, creds)
            except Unauthorized:
                self._count_credentials(method, CredentialOutcome.REFUSED)
                raise
            self._count_credentials(method, CredentialOutcome.ACCEPTED)
            return principal
        self._emit(
            SecurityEventType.AUTHENTICATION_REQUIRED,
            "no credentials",
            creds.client_ip,
            None,
            creds.path,
        )
        raise Unauthorized()

    async def _from_token(self, session: AsyncSession, creds: RequestCredentials) -> Principal:
        assert creds.bearer is not None
        try:
            claims = self.tokens.verify(creds.bearer)
        except TokenError as exc:
            if exc.problem is TokenProblem.EXPIRED:
                self._emit(
                    SecurityEventType.TOKEN_EXPIRED,
                    "expired token",
                    creds.client_ip,
                    None,
                    creds.path,
                )
                raise Unauthorized("token expired", code="token_expired") from None
            self._emit(
                SecurityEventType.UNAUTHORIZED_ACCESS,
                f"invalid token ({exc.reason})",
                creds.client_ip,
                None,
                creds.path,
            )
            raise Unauthorized("invalid token", code="invalid_token") from None
        # The role comes from the database, so a demotion or deletion takes effect at once.
        role = await session.scalar(select(User.role).where(User.id == claims.user_id))
        if role is None:
            self._emit(
                SecurityEventType.UNAUTHORIZED_ACCESS,
                "token for an unknown user",
                creds.client_ip,
                None,
                creds.path,
            )
            raise Unauthorized("invalid token", code="invalid_token")
        return Principal(claims.user_id, Role(role), AuthMethod.TOKEN)

    async def _from_api_key(self, session: AsyncSession, creds: RequestCredentials) -> Principal:
        assert creds.api_key is not None
        prefix = api_keys.parse_prefix(creds.api_key)
        row = None
        if prefix is not None:
            row = (
                await session.execute(
                    select(ApiKey, User.role)
                    .join(User, User.id == ApiKey.user_id)
                    .where(ApiKey.prefix == prefix)
                )
            ).one_or_none()
        if (
            row is None
            or row[0].revoked_at is not None
            or not api_keys.matches(creds.api_key, row[0].key_hash)
        ):
            reason = (
                "revoked API key" if row is not None and row[0].revoked_at else "invalid API key"
            )
            self._emit(
                SecurityEventType.UNAUTHORIZED_ACCESS,
                reason,
                creds.client_ip,
                None,
                creds.path,
                {"api_key_prefix": prefix or "malformed"},
            )
            raise Unauthorized(reason, code="invalid_api_key")
        key, role = row
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key.id)
            .values(use_count=ApiKey.use_count + 1, last_used_at=self._clock.now())
        )
        await session.commit()
        return Principal(key.user_id, Role(role), AuthMethod.API_KEY, api_key_id=key.id)

    def identify(self, bearer: str | None, api_key: str | None) -> str | None:
        """A cheap identity for rate limiting: a verified token's user, or an API key prefix."""
        if bearer is not None:
            try:
                return f"user:{self.tokens.verify(bearer).user_id}"
            except TokenError:
                return None
        if api_key is not None:
            prefix = api_keys.parse_prefix(api_key)
            return f"key:{prefix}" if prefix else None
        return None

    def forbidden(self, principal: Principal, client_ip: str, path: str, reason: str) -> None:
        """Report a refused authorisation (the caller raises Forbidden)."""
        self._emit(SecurityEventType.FORBIDDEN, reason, client_ip, principal.user_id, path)

    def _emit(
        self,
        kind: SecurityEventType,
        details: str,
        client_ip: str,
        user_id: int | None,
        path: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> None:
        self._events.emit(
            SecurityEvent(
                kind,
                details,
                client_ip=client_ip,
                user_id=user_id,
                path=path,
                properties=properties or {},
            )
        )
