"""Signed access tokens (JWT, HS256 pinned on verification)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

import jwt

from digitalme.monitoring.clock import Clock
from digitalme.settings import AuthSettings, Role

ALGORITHM = "HS256"


class TokenProblem(StrEnum):
    EXPIRED = "expired"
    INVALID = "invalid"


class TokenError(Exception):
    """A token was refused; ``problem`` says why, for the security event."""

    def __init__(self, problem: TokenProblem, reason: str) -> None:
        super().__init__(reason)
        self.problem = problem
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    role: Role


class TokenService:
    """Issues and verifies access tokens. Only HS256 is ever accepted."""

    def __init__(self, settings: AuthSettings, secret: str, clock: Clock) -> None:
        self._settings = settings
        self._secret = secret
        self._clock = clock

    @property
    def lifetime(self) -> timedelta:
        return timedelta(seconds=self._settings.token_lifetime)

    def issue(self, user_id: int, role: Role) -> str:
        now = self._clock.now()
        claims = {
            "sub": str(user_id),
            "role": str(role),
            "iss": self._settings.issuer,
            "aud": self._settings.audience,
            "iat": int(now.timestamp()),
            "exp": int((now + self.lifetime).timestamp()),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> TokenClaims:
        """Return the claims of a valid token or raise :class:`TokenError`."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(TokenProblem.INVALID, type(exc).__name__) from None
        # Expiry against the injected clock, not the system one, so tests can move time.
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= int(self._clock.now().timestamp()):
            raise TokenError(TokenProblem.EXPIRED, "ExpiredSignatureError")
        try:
            return TokenClaims(user_id=int(claims["sub"]), role=Role(claims["role"]))
        except (KeyError, ValueError):
            raise TokenError(TokenProblem.INVALID, "InvalidClaims") from None


def resolve_jwt_secret(settings: AuthSettings, data_dir: Path) -> str:
    """The configured secret, or one generated once and kept in ``data_dir`` (mode 0600).

    Keeping the generated secret on disk lets tokens survive a restart of an
    embedded instance; Production refuses to start without a configured one.
    """
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    path = data_dir / "jwt-secret"
    if path.is_file():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(secret)
    return secret
