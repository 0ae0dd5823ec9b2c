"""Redaction of secrets from captured telemetry, off the request path.

The pipeline runs every item through a :class:`Redactor` in batches before
anything reaches a sink. A redactor never raises: odd input is coerced, and
an internal error turns the affected value into :data:`REDACTED` (the item is
kept, the error is logged and counted in :attr:`Redactor.error_count`).

What counts as a *sensitive name* is decided on name parts, see
:meth:`Redactor.is_sensitive_name`. Values are redacted

* under a sensitive property name, at any depth of a dict / list value;
* inside text, in these shapes:

  - a JSON document (object or array) at any depth, including strings that
    themselves hold JSON; the result is re-serialised compactly, and a
    ``{"name": "Authorization", "value": "..."}`` pair (HAR, tags) counts too;
  - JSON-like fragments in larger text: ``"password": "x"``, ``'token': 'x'``,
    also with backslash-escaped quotes (JSON inside a JSON string), and with a
    nested object / array as the value;
  - ``name=value`` and ``name: value`` text, query strings and form bodies
    (names may be URL-encoded, ``api%5Fkey``), ``--password value`` flags;
  - header lines: a sensitive name at the start of a line followed by ``:``
    loses the rest of the line (``Authorization: Basic xyz``);
  - token shapes anywhere: ``Bearer <token>``, JWTs (base64url segments, the
    first starting with ``eyJ``), this project's API keys
    ``dm_<12 hex>_<secret>`` (the public prefix is kept) and the password of
    ``scheme://user:password@host`` URLs;
  - URL-encoded text holding any of the above (``next=%2Fx%3Ftoken%3Dabc``).

How far an unquoted value goes: up to whitespace or a quote character, a
``&`` that starts another ``name=`` pair, or a ``;`` / ``,`` followed by
whitespace. A quoted value goes to its closing quote (backslash escapes
respected); a value that opens a bracket goes to the matching bracket. An
auth scheme word (``Basic``, ``Bearer``, ...) after ``name:`` takes the rest
of the line. A Bearer token ends at whitespace, a quote or ``&``. When a
value's end cannot be found (unterminated quote or bracket) more is
redacted, never less.

Every regular expression is precompiled and has bounded repetitions without
ambiguous alternatives, and every scan moves forward, so the work is linear
in the length of the text; texts longer than ``max(16 * max_length, 65536)``
characters are cut before redaction (the output could not show more anyway).
The result is then truncated to ``max_length`` characters plus a marker.
"""

from __future__ import annotations

import json
import logging
import numbers
import re
import string
from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import quote_plus, unquote_plus

__all__ = ["DEFAULT_SENSITIVE_FIELDS", "REDACTED", "Redactor"]

REDACTED: Final = "[REDACTED]"
DEFAULT_SENSITIVE_FIELDS: Final[tuple[str, ...]] = (
    "password",
    "token",
    "key",
    "secret",
    "authorization",
    "apikey",
)

_log = logging.getLogger(__name__)

# Hard bound on what is looked at. Every repetition below is bounded by `_N`,
# which no run can reach: redaction at most multiplies the length by 11
# (`a=1` -> `a=[REDACTED]`), and passes after the first see that text.
_MAX_INPUT: Final = 1 << 20
_N: Final = str(16 * _MAX_INPUT)
_MAX_NAME: Final = 1024  # longer names are judged on their first 1024 characters
_MAX_DEPTH: Final = 8  # JSON-in-a-string and URL-encoding levels unpacked
_CACHE_SIZE: Final = 8192  # names per cache; cleared when full
_MAX_CACHED_NAME: Final = 256  # longer names are judged every time, not kept
_MIN_SUFFIX_FIELD: Final = 5  # `accesstoken` ends with `token`; `monkey` must not match `key`


def _compile(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """``re.compile`` with ``{MAX}`` standing for the input bound, ``{NAME}`` for name chars."""
    return re.compile(pattern.replace("{MAX}", _N).replace("{NAME}", _NAME_CHARS), flags)


_NAME_CHARS: Final = r"A-Za-z0-9_.%+\[\]\-"
_NON_ALNUM = _compile(r"[^A-Za-z0-9]{1,1024}")
_NAME_PART = _compile(
    r"[A-Z]{1,1024}(?=[A-Z][a-z])|[A-Z]?[a-z]{1,1024}|[A-Z]{1,1024}|[0-9]{1,1024}"
)
_SQUEEZE_ASCII: Final = str.maketrans(
    string.ascii_uppercase,
    string.ascii_lowercase,
    "".join(chr(c) for c in range(128) if not chr(c).isalnum()),
)
_LEADING_SPACE = _compile(r"[ \t\r\n]{0,{MAX}}")

# Where a name meets its value. Three forms: a quoted name (the quote may be
# backslash-escaped: JSON inside a JSON string; `=>` for PHP / Ruby), a bare
# name, a `--flag value`. A quoted name holds no `=` and no `: ` so that
# `"token=x"` and `"token: x"` strings are found by the bare form instead.
_CANDIDATE = _compile(
    r"""
      (?P<q>\\{0,63}["'])(?P<qname>(?:[^"'\\\r\n=:]|:(?![ \t])){1,128})(?P=q)
      [ \t]{0,16}(?:=>|[:=])[ \t]{0,16}
    | (?<![{NAME}])(?P<name>[{NAME}]{1,256})[ \t]{0,16}(?P<sep>[:=])[ \t]{0,16}
    | (?<![{NAME}])--(?P<flag>[A-Za-z0-9][A-Za-z0-9_.\-]{0,127})[ \t]{1,16}(?=[^\s\-])
    """,
    re.VERBOSE,
)
_QUOTE_OPEN = _compile(r"""(\\{0,63})(["'])""")
# An unquoted value: stops at whitespace, at quotes (also backslash-escaped
# ones) and at `& ; ,` (which `_bare_value_end` then decides on).
_VALUE_RUN = _compile(r"""(?:[^\s"'\\&;,]|\\(?!\\{0,63}["'])){1,{MAX}}""")
# The value after a quoted name when it is not quoted: a JSON / Python scalar.
_SCALAR = _compile(r"""(?:[^\s,}\])"'\\]|\\(?!\\{0,63}["'])){1,{MAX}}""")
_REST_OF_LINE = _compile(r"[^\r\n]{1,{MAX}}")
_NEXT_PAIR = _compile(r"&(?:amp;)?[{NAME}]{1,256}=")
# A JSON string literal, so that escaped content (JSON inside a JSON string)
# can be decoded, redacted and encoded again. An unterminated one matches up
# to the end of its line (and is left alone): no quote inside it can start a
# literal that ends, so it must not be scanned again from each of them.
_STRING_LITERAL = _compile(r""""(?:[^"\\\r\n]|\\[^\r\n]){0,{MAX}}(?:"|\\?(?=[\r\n]|\Z))""")
_BRACKET_OR_QUOTE = _compile(r"""[\[\]{}"']""")
_OPENER: Final = {"]": "[", "}": "{"}
# fmt: off
_AUTH_SCHEMES: Final = frozenset((
    "basic", "bearer", "digest", "token", "negotiate", "ntlm", "apikey", "api-key", "key",
    "hoba", "mutual", "dpop", "oauth", "mac", "signature", "sharedkey", "aws4-hmac-sha256",
))
# fmt: on

_BEARER = _compile(
    r"""(?i)(?P<lead>\bbearer(?:[ \t]{1,16}|%20|\+|\\{1,7}t))(?!\[REDACTED\])"""
    r"""(?:[^\s"'\\&]|\\(?!\\{0,63}["'])){1,{MAX}}"""
)
_JWT = _compile(
    r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{1,{MAX}}\.[A-Za-z0-9_\-]{1,{MAX}}"
    r"(?:\.[A-Za-z0-9_\-]{0,{MAX}}){1,3}"
)
_API_KEY = _compile(r"(?<![A-Za-z0-9])(?P<prefix>dm_[0-9a-fA-F]{12}_)[A-Za-z0-9_\-]{1,{MAX}}")
_USERINFO = _compile(
    r"""(?P<lead>\b[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s:/?#@"'<>\[\]]{0,256}:)"""
    r"""(?!\[REDACTED\]@)[^\s/?#"'<>]{1,{MAX}}@"""
)
_ENCODED_RUN = _compile(r"(?:[A-Za-z0-9._~+*!\-]|%[0-9A-Fa-f]{2}){1,{MAX}}")


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
        self._work_limit = min(_MAX_INPUT, max(16 * max_length, 65_536))
        self._redacted_value = self._truncate(REDACTED, 0)  # REDACTED unless max_length < 10
        self._name_cache: dict[str, bool] = {}
        self._key_cache: dict[str, tuple[str, bool]] = {}
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
        return self._redact_object(text)

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
        if not self._needs_work(text):
            return text
        if depth < _MAX_DEPTH:
            start = _LEADING_SPACE.match(text)
            if start is not None and text[start.end() : start.end() + 1] in ("{", "["):
                document = self._redact_json_document(text, depth)
                if document is not None:
                    return document
        if "\\" in text and depth < _MAX_DEPTH:
            text = self._redact_string_literals(text, depth)
        text = self._redact_named_values(text)
        text = self._redact_token_shapes(text)
        if "%" in text and depth < _MAX_DEPTH:
            text = self._redact_encoded_runs(text, depth)
        return text

    def _redact_json_document(self, text: str, depth: int) -> str | None:
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if not isinstance(document, dict | list):
            return None
        if not self._redact_json_tree(document, depth):
            return text
        try:
            return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        except (ValueError, RecursionError):
            return None

    def _redact_json_tree(self, root: dict[str, object] | list[object], depth: int) -> bool:
        """Redacts a parsed JSON tree in place; whether anything changed."""
        changed = False
        stack: list[object] = [root]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                pair_value = self._pair_value_key(node)
                rebuilt: dict[str, object] = {}
                for key, value in node.items():
                    new_key = self._redact(key, depth + 1)
                    changed = changed or new_key != key
                    if value is not None and (key == pair_value or self.is_sensitive_name(key)):
                        changed = changed or value != REDACTED
                        value = REDACTED
                    elif isinstance(value, str):
                        new_value = self._redact(value, depth + 1)
                        changed = changed or new_value != value
                        value = new_value
                    elif isinstance(value, dict | list):
                        stack.append(value)
                    rebuilt[new_key] = value
                node.clear()
                node.update(rebuilt)
            elif isinstance(node, list):
                for i, value in enumerate(node):
                    if isinstance(value, str):
                        new_value = self._redact(value, depth + 1)
                        if new_value != value:
                            changed, node[i] = True, new_value
                    elif isinstance(value, dict | list):
                        stack.append(value)
        return changed

    def _pair_value_key(self, node: dict[str, object]) -> str | None:
        """``"value"`` when ``node`` is a ``{"name": <sensitive>, "value": ...}`` pair."""
        for name_key in ("name", "key", "Name", "Key"):
            name = node.get(name_key)
            if isinstance(name, str) and self.is_sensitive_name(name):
                for value_key in ("value", "Value"):
                    if value_key in node:
                        return value_key
        return None

    def _redact_named_values(self, text: str) -> str:
        pieces: list[str] = []
        done = pos = 0
        # A bracket scan that finds no match has read to the end of the text; a
        # second one could read it again, so after one such failure bare values
        # are no longer scanned for brackets (the work stays linear).
        scan_brackets = True
        while True:
            m = _CANDIDATE.search(text, pos)
            if m is None:
                break
            start = m.end()
            name = m.group("qname") or m.group("name") or m.group("flag") or ""
            if not self.is_sensitive_name(name):
                pos = start
                continue
            end, replacement, scan_brackets = self._value_extent(text, m, start, scan_brackets)
            if end > start:
                pieces += (text[done:start], replacement)
                done = end
            pos = end
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    @staticmethod
    def _value_extent(
        text: str, m: re.Match[str], start: int, scan_brackets: bool
    ) -> tuple[int, str, bool]:
        """Where the value after name match ``m`` ends, what replaces it, and
        whether bracket scans may still be tried.

        Every scan either consumes what it read or reads at most to the end
        of the line, except one failed bracket scan per text.
        """
        n = len(text)
        if start >= n:
            return start, "", scan_brackets
        name_quote = m.group("q")
        if m.group("sep") == ":" and (m.start() == 0 or text[m.start() - 1] in "\r\n"):
            return _line_end(text, start, n), REDACTED, scan_brackets  # a header line
        opening = _QUOTE_OPEN.match(text, start)
        if opening is not None:
            quote_char, level = opening.group(2), len(opening.group(1))
            if name_quote is not None:  # JSON-like: to the closing quote, or to the end
                end = _string_end(text, opening.end(), quote_char, level, n) or n
            else:  # `name="..."` text: within the line
                line_end = _line_end(text, start, n)
                end = _string_end(text, opening.end(), quote_char, level, line_end) or line_end
            quote = name_quote or opening.group(0)  # `'k': "v'"` -> `'k': '[REDACTED]'`
            return end, f"{quote}{REDACTED}{quote}", scan_brackets
        if text[start] in "{[":
            if name_quote is not None:  # to the matching bracket, or to the end
                end = _bracket_end(text, start, n) or n
                return end, f"{name_quote}{REDACTED}{name_quote}", scan_brackets
            if scan_brackets:
                closed = _bracket_end(text, start, n)
                if closed is not None:
                    return _bare_value_end(text, closed, n), REDACTED, True
                scan_brackets = False
        if name_quote is not None:
            scalar = _SCALAR.match(text, start)
            return (start if scalar is None else scalar.end()), REDACTED, scan_brackets
        end = _bare_value_end(text, start, n)
        if (
            m.group("sep") == ":"
            and end < n
            and text[end] in " \t"
            and text[start:end].lower() in _AUTH_SCHEMES
        ):
            end = _line_end(text, end, n)  # `... Authorization: Basic xyz`
        return end, REDACTED, scan_brackets

    @staticmethod
    def _redact_token_shapes(text: str) -> str:
        if "eyJ" in text:
            text = _JWT.sub(REDACTED, text)
        if "dm_" in text:
            text = _API_KEY.sub(r"\g<prefix>" + REDACTED, text)
        if "://" in text and "@" in text:
            text = _USERINFO.sub(r"\g<lead>" + REDACTED + "@", text)
        if "bearer" in text.lower():
            text = _BEARER.sub(r"\g<lead>" + REDACTED, text)
        return text

    def _redact_string_literals(self, text: str, depth: int) -> str:
        """Redacts inside escaped JSON string literals: decode, redact, encode."""

        def replace(m: re.Match[str]) -> str:
            literal = m.group(0)
            if "\\" not in literal or len(literal) < 2 or literal[-1] != '"':
                return literal  # plain, or unterminated: the text pass reads it as it is
            try:
                content = json.loads(literal)
            except ValueError:
                return literal
            if not isinstance(content, str):
                return literal
            redacted = self._redact(content, depth + 1)
            return literal if redacted == content else json.dumps(redacted, ensure_ascii=False)

        return _STRING_LITERAL.sub(replace, text)

    def _redact_encoded_runs(self, text: str, depth: int) -> str:
        def replace(m: re.Match[str]) -> str:
            run = m.group(0)
            if "%" not in run:
                return run
            decoded = unquote_plus(run)
            if decoded == run:
                return run
            redacted = self._redact(decoded, depth + 1)
            return run if redacted == decoded else quote_plus(redacted, safe="")

        return _ENCODED_RUN.sub(replace, text)

    def _record_error(self) -> None:
        self._errors += 1
        if self._errors <= 3 or self._errors % 1000 == 0:
            _log.exception("telemetry redaction failed; value replaced by %s", REDACTED)


# -- scanning helpers ---------------------------------------------------------------------


def _line_end(text: str, start: int, n: int) -> int:
    m = _REST_OF_LINE.match(text, start, n)
    return start if m is None else m.end()


def _backslashes_before(text: str, index: int, floor: int) -> int:
    i = index
    while i > floor and text[i - 1] == "\\":
        i -= 1
    return index - i


def _string_end(text: str, start: int, quote: str, level: int, n: int) -> int | None:
    """The index after the quote closing a string opened just before ``start``.

    ``level`` is the number of backslashes before the opening quote: 0 for a
    plain string, 1 for a string inside a JSON string, 3 one level deeper. At
    that level a closing quote is preceded by a run of backslashes whose length
    is ``level`` modulo ``2 * (level + 1)``; other runs escape the quote.
    """
    modulus = 2 * (level + 1)
    pos = start
    while True:
        j = text.find(quote, pos, n)
        if j < 0:
            return None
        if _backslashes_before(text, j, pos) % modulus == level:
            return j + 1
        pos = j + 1


def _bracket_end(text: str, start: int, n: int) -> int | None:
    """The index after the bracket matching the one at ``start``, strings skipped."""
    stack: list[str] = []
    pos = start
    while True:
        m = _BRACKET_OR_QUOTE.search(text, pos, n)
        if m is None:
            return None
        j = m.start()
        char = text[j]
        if char in "\"'":
            end = _string_end(text, j + 1, char, _backslashes_before(text, j, pos), n)
            if end is None:
                return None
            pos = end
        elif char in "[{":
            stack.append(char)
            pos = j + 1
        else:
            if not stack or stack.pop() != _OPENER[char]:
                return None
            pos = j + 1
            if not stack:
                return pos


def _bare_value_end(text: str, start: int, n: int) -> int:
    pos = start
    while pos < n:
        run = _VALUE_RUN.match(text, pos, n)
        if run is not None:
            pos = run.end()
            if pos >= n:
                break
        char = text[pos]
        if char == "&":
            if _NEXT_PAIR.match(text, pos, n):
                break
        elif char in ";,":
            if pos + 1 >= n or text[pos + 1].isspace():
                break
        else:  # whitespace or a quote
            break
        pos += 1
    return pos


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
    except Exception:  # noqa: S110 - the placeholder below is the answer
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
