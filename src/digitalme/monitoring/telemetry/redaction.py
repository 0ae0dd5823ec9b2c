"""Redaction of secrets from captured telemetry, off the request path.

The pipeline runs every item through a :class:`Redactor` in batches before
anything reaches a sink. A redactor never raises: odd input is coerced, and
an internal error turns the affected value into :data:`REDACTED` (the item is
kept, the error is logged and counted in :attr:`Redactor.error_count`).

What counts as a *sensitive name* is decided on name parts, see
:meth:`Redactor.is_sensitive_name`. Values are redacted

* under a sensitive property name, at any depth of a dict / list value;
* inside text, in the shapes listed in
  :mod:`digitalme.monitoring.telemetry.secret_scanner`, which finds them: JSON
  documents and JSON-like fragments, ``name=value`` / ``name: value`` text,
  header lines, ``--password value`` flags, ``Bearer`` tokens, JWTs, this
  project's API keys, URL passwords, and URL-encoded text holding any of these.

The scanners' work is linear in the length of the text; texts longer than
``max(16 * max_length, 65536)`` characters are cut before redaction (the
output could not show more anyway). The result is then truncated to
``max_length`` characters plus a marker.
"""

from __future__ import annotations

import json
import logging
import numbers
import re
import string
from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import unquote_plus

from digitalme.monitoring.telemetry.secret_scanner import (
    MAX_INPUT,
    REDACTED,
    redact_encoded_runs,
    redact_json_document,
    redact_named_values,
    redact_string_literals,
    redact_token_shapes,
)

__all__ = ["DEFAULT_SENSITIVE_FIELDS", "REDACTED", "Redactor"]

DEFAULT_SENSITIVE_FIELDS: Final[tuple[str, ...]] = (
    "password",
    "token",
    "key",
    "secret",
    "authorization",
    "apikey",
)

_log = logging.getLogger(__name__)

_MAX_NAME: Final = 1024  # longer names are judged on their first 1024 characters
_MAX_DEPTH: Final = 8  # JSON-in-a-string and URL-encoding levels unpacked
_CACHE_SIZE: Final = 8192  # names per cache; cleared when full
_MAX_CACHED_NAME: Final = 256  # longer names are judged every time, not kept
_MAX_CACHED_TEXT: Final = 256  # texts up to this length keep their redacted form
_MIN_SUFFIX_FIELD: Final = 5  # `accesstoken` ends with `token`; `monkey` must not match `key`

_NON_ALNUM = re.compile(r"[^A-Za-z0-9]{1,1024}")
_NAME_PART = re.compile(
    r"[A-Z]{1,1024}(?=[A-Z][a-z])|[A-Z]?[a-z]{1,1024}|[A-Z]{1,1024}|[0-9]{1,1024}"
)
_SQUEEZE_ASCII: Final = str.maketrans(
    string.ascii_uppercase,
    string.ascii_lowercase,
    "".join(chr(c) for c in range(128) if not chr(c).isalnum()),
)

_EXCEPTION_SUFFIXES = frozenset({"error", "exception", "warning"})


class Redactor:
    """Removes secrets from telemetry properties and text.

    ``sensitive_fields`` are the configured names (settings:
    ``custom_telemetry.sensitive_data_fields``), compared case-insensitively
    and without separators (``"api-key"`` means ``apikey``). ``max_length``
    bounds every value and key (settings: ``max_property_length``).

    Instances keep small bounded caches and are safe to share between threads.
    """

    def __init__(
        self,
        sensitive_fields: Sequence[str] = DEFAULT_SENSITIVE_FIELDS,
        max_length: int = 1000,
    ) -> None:
        if isinstance(sensitive_fields, str):
            raise TypeError("sensitive_fields must be a sequence of names, not one string")
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {max_length}")
        fields: list[str] = []
        for field in sensitive_fields:
            normal = _NON_ALNUM.sub("", str(field)).lower()
            if normal and normal not in fields:
                fields.append(normal)
        self.sensitive_fields: tuple[str, ...] = tuple(fields)
        self.max_length = max_length
        self._fields = frozenset(fields)
        self._suffix_fields = tuple(f for f in fields if len(f) >= _MIN_SUFFIX_FIELD)
        self._work_limit = min(MAX_INPUT, max(16 * max_length, 65_536))
        self._redacted_value = self._truncate(REDACTED, 0)  # REDACTED unless max_length < 10
        self._name_cache: dict[str, bool] = {}
        self._key_cache: dict[str, tuple[str, bool]] = {}
        # SQL statements, dependency names and URLs repeat: redaction is a pure function
        # of the text, so a short text is redacted once and then looked up.
        self._text_cache: dict[str, str] = {}
        self._errors = 0

    @property
    def error_count(self) -> int:
        """Internal errors so far (each one redacted a whole value to be safe)."""
        return self._errors

    # -- names ------------------------------------------------------------------------

    def is_sensitive_name(self, name: str) -> bool:
        """Whether values under ``name`` are secret.

        The name is split into parts on non-alphanumerics and on camelCase
        boundaries (``X-API-Key`` and ``XAPIKey`` -> ..., ``key``;
        ``refreshToken`` -> ``refresh``, ``token``), lowercased; the pieces
        between separators count as parts too (``pAsSwOrD``). It is sensitive
        when a part, or two adjacent parts joined (``api`` + ``key``), equals a
        configured field or its plural, or ends with a configured field of at
        least five letters (``accesstoken``, ``DBPASSWORD``), or when the whole
        name without separators equals a field. ``keyboard``, ``monkey``,
        ``tokenizer`` and ``secretary`` are not sensitive. URL-encoded names
        count both as written and decoded.
        """
        try:
            if not isinstance(name, str):
                name = _safe_str(name)
            cached = self._name_cache.get(name)
            if cached is None:
                cached = self._judge_name(name)
                if "%" in name:
                    cached = cached or self._judge_name(_url_decode(name))
                if len(name) <= _MAX_CACHED_NAME:
                    if len(self._name_cache) >= _CACHE_SIZE:
                        self._name_cache.clear()
                    self._name_cache[name] = cached
            return cached
        except Exception:
            self._record_error()
            return True

    def _judge_name(self, name: str) -> bool:
        chunks = [chunk for chunk in _NON_ALNUM.split(name[:_MAX_NAME]) if chunk]
        parts = [part.lower() for chunk in chunks for part in _NAME_PART.findall(chunk)]
        # Exception class names (`KeyError: 'user_id'`, `TokenError`) name a failure,
        # not a secret; redacting them would hide the cause in every stack trace.
        if len(parts) > 1 and parts[-1] in _EXCEPTION_SUFFIXES:
            return False
        # Chunks between separators are judged too, so that any casing of a field
        # matches when it stands apart (`pAsSwOrD`, `user_PassWord`).
        words = [chunk.lower() for chunk in chunks]
        for sequence in (parts, words):
            for i, part in enumerate(sequence):
                if self._part_matches(part):
                    return True
                if i + 1 < len(sequence) and self._part_matches(part + sequence[i + 1]):
                    return True
        return "".join(words) in self._fields

    def _part_matches(self, part: str) -> bool:
        fields = self._fields
        if part in fields or (part[-1:] == "s" and part[:-1] in fields):
            return True
        stem = part[:-1] if part[-1:] == "s" else part
        return any(part.endswith(f) or stem.endswith(f) for f in self._suffix_fields)

    # -- public entry points ----------------------------------------------------------

    def redact_properties(self, props: Mapping[str, object]) -> dict[str, str]:
        """A copy of ``props`` safe for a sink: every value a redacted, bounded string.

        Keys are kept (redacted as text and truncated; a key that collides after
        that gets a ``#2`` suffix). Values under sensitive names become
        :data:`REDACTED`; other values are converted to strings (numbers and
        bools with ``str``, dicts and lists as compact JSON, ``None`` as ``""``,
        anything else with ``repr``), run through :meth:`redact_text` and
        truncated. Not a mapping: ``None`` gives ``{}``, pairs are accepted,
        anything else lands under the key ``"properties"``.
        """
        out: dict[str, str] = {}
        try:
            items = self._items(props)
        except Exception:
            return {"properties": self._redact_object(props)}
        key_cache, max_length, needs_work = self._key_cache, self.max_length, self._needs_work
        for index, (raw_key, value) in enumerate(items):
            try:
                info = key_cache.get(raw_key) if type(raw_key) is str else None
                key, sensitive = self._key_info(raw_key) if info is None else info
                if sensitive:
                    text = self._redacted_value
                elif type(value) is str and len(value) <= max_length and not needs_work(value):
                    text = value  # the common case, without the general path's calls
                else:
                    text = self._redact_value(value)
            except Exception:
                self._record_error()
                key, text = f"property{index}", self._redacted_value
            if key in out:
                base, n = key, 2
                while key in out:
                    key, n = f"{base}#{n}", n + 1
            out[key] = text
        return out

    def redact_text(self, text: str) -> str:
        """``text`` with every secret shape replaced, then truncated (see the module doc)."""
        if type(text) is not str or len(text) > _MAX_CACHED_TEXT:
            return self._redact_object(text)
        redacted = self._text_cache.get(text)
        if redacted is None:
            redacted = self._redact_object(text)
            if len(self._text_cache) >= _CACHE_SIZE:
                self._text_cache.clear()
            self._text_cache[text] = redacted
        return redacted

    def _redact_object(self, text: object) -> str:
        try:
            if type(text) is not str:
                text = _coerce(text)
            cut = len(text) - self._work_limit
            if cut > 0:
                text = text[: self._work_limit]
            return self._truncate(self._redact(text, 0), max(cut, 0))
        except Exception:
            self._record_error()
            return self._redacted_value

    def truncate(self, text: str) -> str:
        """``text`` cut to ``max_length`` characters, with a marker saying how many went."""
        try:
            if type(text) is not str:
                text = _coerce(text)
            return self._truncate(text, 0)
        except Exception:
            self._record_error()
            return self._redacted_value

    # -- properties -------------------------------------------------------------------

    @staticmethod
    def _items(props: object) -> list[tuple[object, object]]:
        if type(props) is dict:
            return list(props.items())
        if props is None:
            return []
        if isinstance(props, Mapping):
            return list(props.items())
        if isinstance(props, str | bytes):
            raise TypeError("not a mapping")
        return list(dict(props).items())  # type: ignore[call-overload]

    def _key_info(self, raw_key: object) -> tuple[str, bool]:
        name = raw_key if type(raw_key) is str else _safe_str(raw_key)
        info = self._key_cache.get(name)
        if info is None:
            info = (self.redact_text(name), self.is_sensitive_name(name))
            if len(name) <= _MAX_CACHED_NAME:
                if len(self._key_cache) >= _CACHE_SIZE:
                    self._key_cache.clear()
                self._key_cache[name] = info
        return info

    def _redact_value(self, value: object) -> str:
        if type(value) is str:
            return self.redact_text(value)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "True" if value else "False"
        if isinstance(value, numbers.Number):
            return self.truncate(_safe_str(value))
        return self.redact_text(_coerce(value))

    # -- text -------------------------------------------------------------------------

    def _truncate(self, text: str, dropped: int) -> str:
        over = len(text) - self.max_length
        if over <= 0 and dropped == 0:
            return text
        return f"{text[: self.max_length]}…[truncated {max(over, 0) + dropped} chars]"

    def _needs_work(self, text: str) -> bool:
        """A cheap test that is true for every text holding a shape we redact."""
        if "eyJ" in text or "dm_" in text or "%" in text:
            return True
        if "://" in text and "@" in text:
            return True
        if "=" in text or ":" in text or "--" in text:
            # Lowercased without separators: holds every field a name in it can match.
            if text.isascii():
                squeezed = text.translate(_SQUEEZE_ASCII)
            else:
                squeezed = _NON_ALNUM.sub("", text).lower()
            if "bearer" in squeezed:
                return True
            for field in self._fields:  # noqa: SIM110 - twice as fast as any() here
                if field in squeezed:
                    return True
            return False
        return "bearer" in text.lower()

    def _redact(self, text: str, depth: int) -> str:
        """Runs the passes of :mod:`.secret_scanner` over ``text``, unpacking
        nested text (JSON strings, URL-encoded runs) up to ``_MAX_DEPTH`` levels."""
        if not self._needs_work(text):
            return text

        def redact_nested(inner: str) -> str:
            return self._redact(inner, depth + 1)

        if depth < _MAX_DEPTH:
            document = redact_json_document(text, self.is_sensitive_name, redact_nested)
            if document is not None:
                return document
        if "\\" in text and depth < _MAX_DEPTH:
            text = redact_string_literals(text, redact_nested)
        text = self._redact_named_values(text)
        text = redact_token_shapes(text)
        if "%" in text and depth < _MAX_DEPTH:
            text = redact_encoded_runs(text, redact_nested)
        return text

    def _redact_named_values(self, text: str) -> str:
        """The ``name=value`` pass, judged by :meth:`is_sensitive_name`."""
        return redact_named_values(text, self.is_sensitive_name)

    def _record_error(self) -> None:
        self._errors += 1
        if self._errors <= 3 or self._errors % 1000 == 0:
            _log.exception("telemetry redaction failed; value replaced by %s", REDACTED)


# -- name helpers -------------------------------------------------------------------------


def _url_decode(text: str) -> str:
    for _ in range(3):
        decoded = unquote_plus(text)
        if decoded == text:
            break
        text = decoded
    return text


# -- coercion -----------------------------------------------------------------------------


def _safe_str(value: object) -> str:
    if isinstance(value, str):
        return str.__str__(value)  # the characters, whatever a subclass's __str__ does
    for convert in (str, repr):
        try:
            text = convert(value)
            if type(text) is str:
                return text
        except Exception:  # noqa: S112 - any failure just means: try the next way
            continue
    return f"<unrepresentable {type(value).__name__}>"


def _json_default(value: object) -> object:
    try:
        if isinstance(value, set | frozenset):
            return list(value)
        if isinstance(value, Mapping):
            return dict(value)
    except Exception:  # noqa: S110 - a container that cannot be read: its repr below
        pass
    return _safe_str(value) if isinstance(value, numbers.Number) else _safe_repr(value)


def _safe_repr(value: object) -> str:
    try:
        text = repr(value)
        if type(text) is str:
            return text
    except Exception:  # noqa: S110 - a value whose repr fails is named by its type instead
        pass
    return f"<unrepresentable {type(value).__name__}>"


def _coerce(value: object) -> str:
    """Any value as text: JSON for containers, ``str`` for numbers, else ``repr``."""
    if isinstance(value, str):
        return str.__str__(value)
    if value is None:
        return ""
    if isinstance(value, bool | numbers.Number):
        return _safe_str(value)
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        try:
            return json.dumps(
                value, ensure_ascii=False, separators=(",", ":"), default=_json_default
            )
        except Exception:  # noqa: S110 - odd keys, cycles, huge ints: fall back to repr
            pass
    return _safe_repr(value)
