"""The host's security guard: pure ASGI middleware that runs before every handler.

It works out the client's IP (trusting ``X-Forwarded-For`` only from configured
proxies), enforces per-IP and per-identity rate limits, refuses requests that
carry injection signatures or oversized bodies, and reports each refusal on the
security-events seam. Install it inside the request-id middleware so that its
error responses carry the request id::

    app.add_middleware(SecurityGuardMiddleware, settings=settings.security,
                       events=events, identify=identify, redis_url=settings.redis_url)
"""

from digitalme.host.guard.client_ip import client_ip, parse_trusted
from digitalme.host.guard.middleware import Identify, SecurityGuardMiddleware
from digitalme.host.guard.rate_limit import LimitScope, RateLimitDecision, RateLimiter
from digitalme.host.guard.threats import ThreatType, detect_threat

__all__ = [
    "Identify",
    "LimitScope",
    "RateLimitDecision",
    "RateLimiter",
    "SecurityGuardMiddleware",
    "ThreatType",
    "client_ip",
    "detect_threat",
    "parse_trusted",
]
