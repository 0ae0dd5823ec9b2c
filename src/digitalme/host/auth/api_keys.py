"""API keys for machine clients: ``dm_<prefix>_<secret>``, stored as SHA-256 only.

The keys carry 256 bits of randomness, so a fast hash is enough (unlike passwords)
and lets a request be checked with one indexed lookup by prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_PREFIX = "dm"


@dataclass(frozen=True, slots=True)
class NewKey:
    prefix: str
    key: str
    key_hash: str


def generate_key() -> NewKey:
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(prefix=prefix, key=key, key_hash=hash_key(key))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_prefix(key: str) -> str | None:
    """The visible prefix of a well-formed key, or None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1]


def matches(key: str, key_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), key_hash)
