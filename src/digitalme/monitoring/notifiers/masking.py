"""Keeping channel secrets out of error reasons, receipts and logs.

Webhook URLs embed their token in the path (Slack's ``/services/T../B../<token>``)
or the query, so a URL is masked as a whole and also by its path and query on
their own: a receiver or library that echoes only the path gives nothing away.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["MASK", "MAX_REASON_LENGTH", "SecretMask"]

MASK = "***"
MAX_REASON_LENGTH = 300
# Shorter pieces of a URL (a path of "/") would mask harmless text and reveal nothing.
_MIN_URL_PIECE = 6


class SecretMask:
    """Replaces every known secret in a text by ``***`` and bounds its length."""

    def __init__(self, secrets: Iterable[str | None] = (), urls: Iterable[str | None] = ()) -> None:
        fragments = {secret for secret in secrets if secret}
        for url in urls:
            if url:
                parts = urlsplit(url)
                pieces = (parts.path, parts.query, f"{parts.path}?{parts.query}")
                fragments.add(url)
                fragments.update(piece for piece in pieces if len(piece) >= _MIN_URL_PIECE)
        # Longest first, so that a URL is masked whole before its path is looked for.
        self._fragments = sorted(fragments, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for fragment in self._fragments:
            text = text.replace(fragment, MASK)
        if len(text) > MAX_REASON_LENGTH:
            text = text[: MAX_REASON_LENGTH - 1] + "…"
        return text
