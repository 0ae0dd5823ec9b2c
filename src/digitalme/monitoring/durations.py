"""Durations as rules, rule test files and the metrics API write them: ``30s``, ``5m``,
``1h30m``, ``250ms``, ISO 8601 (``PT5M``, ``P1DT2H``) or a number of seconds."""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_COMPACT = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_ISO = re.compile(
    r"P(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
MAX_SECONDS = 366 * 86400.0


def parse_duration(value: object) -> float:
    """Seconds in ``value``; raises ValueError with a reason a person can act on."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like '30s', '5m', 'PT5M' or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip())
    else:
        raise ValueError("must be a duration like '30s', '5m', 'PT5M' or a number of seconds")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("must be a finite, non-negative duration")
    if seconds > MAX_SECONDS:
        raise ValueError("must be at most 366 days")
    return seconds


def _parse_text(text: str) -> float:
    if not text:
        raise ValueError("must not be empty")
    try:
        return float(text)
    except ValueError:
        pass
    if text[:1] in ("P", "p"):
        match = _ISO.fullmatch(text)
        if match and text.upper() not in ("P", "PT") and not text.upper().endswith("T"):
            parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
            return (
                parts.get("d", 0.0) * 86400
                + parts.get("h", 0.0) * 3600
                + parts.get("m", 0.0) * 60
                + parts.get("s", 0.0)
            )
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    position = 0
    total = 0.0
    for match in _COMPACT.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        raise ValueError(
            f"not a duration: {text!r} (use e.g. '30s', '5m', '1h30m', 'PT5M' or seconds)"
        )
    return total


def format_duration(seconds: float) -> str:
    """A short human form (``5m``, ``1h30m``, ``2.5s``) for messages and tables."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    remaining = seconds
    parts = []
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if remaining >= size:
            count = math.floor(remaining / size)
            parts.append(f"{count}{unit}")
            remaining -= count * size
    if remaining or not parts:
        parts.append(f"{remaining:g}s")
    return "".join(parts)
