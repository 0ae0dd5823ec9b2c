"""Finding and redacting secrets inside free text, for :class:`~.redaction.Redactor`.

The passes here replace with :data:`REDACTED` the values they find in these
shapes:

* a JSON document (object or array) at any depth, including strings that
  themselves hold JSON; the result is re-serialised compactly, and a
  ``{"name": "Authorization", "value": "..."}`` pair (HAR, tags) counts too;
* JSON-like fragments in larger text: ``"password": "x"``, ``'token': 'x'``,
  also with backslash-escaped quotes (JSON inside a JSON string), and with a
  nested object / array as the value;
* ``name=value`` and ``name: value`` text, query strings and form bodies
  (names may be URL-encoded, ``api%5Fkey``), ``--password value`` flags;
* header lines: a sensitive name at the start of a line followed by ``:``
  loses the rest of the line (``Authorization: Basic xyz``);
* token shapes anywhere: ``Bearer <token>``, JWTs (base64url segments, the
  first starting with ``eyJ``), this project's API keys
  ``dm_<12 hex>_<secret>`` (the public prefix is kept) and the password of
  ``scheme://user:password@host`` URLs;
* URL-encoded text holding any of the above (``next=%2Fx%3Ftoken%3Dabc``).

Whether a name is sensitive is not decided here: a pass that looks at names
takes the predicate (:meth:`Redactor.is_sensitive_name`), and a pass that
unpacks nested text (strings holding JSON, escaped string literals,
URL-encoded runs) hands what it unpacked to ``redact_nested``, so the caller
decides which passes run and how deep.

How far an unquoted value goes: up to whitespace or a quote character, a
``&`` that starts another ``name=`` pair, or a ``;`` / ``,`` followed by
whitespace. A quoted value goes to its closing quote (backslash escapes
respected); a value that opens a bracket goes to the matching bracket (in
``name=value`` text, on the same line). An
auth scheme word (``Basic``, ``Bearer``, ...) after ``name:`` takes the rest
of the line. A Bearer token ends at whitespace, a quote or ``&``. When a
value's end cannot be found (unterminated quote or bracket) more is
redacted, never less.

Every regular expression is precompiled and has bounded repetitions without
ambiguous alternatives, and every scan moves forward, so the work is linear
in the length of the text. The bounds hold for texts of up to
:data:`MAX_INPUT` characters; the caller cuts longer ones first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Final
from urllib.parse import quote_plus, unquote_plus

__all__ = [
    "MAX_INPUT",
    "REDACTED",
    "redact_encoded_runs",
    "redact_json_document",
    "redact_named_values",
    "redact_string_literals",
    "redact_token_shapes",
]

REDACTED: Final = "[REDACTED]"

# Hard bound on what is looked at. Every repetition below is bounded by `_N`,
# which no run can reach: redaction at most multiplies the length by 11
# (`a=1` -> `a=[REDACTED]`), and passes after the first see that text.
MAX_INPUT: Final = 1 << 20
_N: Final = str(16 * MAX_INPUT)


def _compile(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """``re.compile`` with ``{MAX}`` standing for the input bound, ``{NAME}`` for name chars."""
    return re.compile(pattern.replace("{MAX}", _N).replace("{NAME}", _NAME_CHARS), flags)


_NAME_CHARS: Final = r"A-Za-z0-9_.%+\[\]\-"
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


# -- passes -------------------------------------------------------------------------------


def redact_json_document(
    text: str, is_sensitive: Callable[[str], bool], redact_nested: Callable[[str], str]
) -> str | None:
    """``text`` redacted as a JSON object or array, ``None`` when it is not one.

    Values under names that ``is_sensitive`` accepts become :data:`REDACTED`;
    other strings, and all keys, go through ``redact_nested``.
    """
    start = _LEADING_SPACE.match(text)
    if start is None or text[start.end() : start.end() + 1] not in ("{", "["):
        return None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict | list):
        return None
    if not _redact_json_tree(document, is_sensitive, redact_nested):
        return text
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    except (ValueError, RecursionError):
        return None


def _redact_json_tree(
    root: dict[str, object] | list[object],
    is_sensitive: Callable[[str], bool],
    redact_nested: Callable[[str], str],
) -> bool:
    """Redacts a parsed JSON tree in place; whether anything changed."""
    changed = False
    stack: list[object] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            pair_value = _pair_value_key(node, is_sensitive)
            rebuilt: dict[str, object] = {}
            for key, value in node.items():
                new_key = redact_nested(key)
                changed = changed or new_key != key
                if value is not None and (key == pair_value or is_sensitive(key)):
                    changed = changed or value != REDACTED
                    value = REDACTED
                elif isinstance(value, str):
                    new_value = redact_nested(value)
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
                    new_value = redact_nested(value)
                    if new_value != value:
                        changed, node[i] = True, new_value
                elif isinstance(value, dict | list):
                    stack.append(value)
    return changed


def _pair_value_key(node: dict[str, object], is_sensitive: Callable[[str], bool]) -> str | None:
    """``"value"`` when ``node`` is a ``{"name": <sensitive>, "value": ...}`` pair."""
    for name_key in ("name", "key", "Name", "Key"):
        name = node.get(name_key)
        if isinstance(name, str) and is_sensitive(name):
            for value_key in ("value", "Value"):
                if value_key in node:
                    return value_key
    return None


def redact_named_values(text: str, is_sensitive: Callable[[str], bool]) -> str:
    """``text`` with the value after every name ``is_sensitive`` accepts redacted."""
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
        if not is_sensitive(name):
            pos = start
            continue
        end, replacement, scan_brackets = _value_extent(text, m, start, scan_brackets)
        if end > start:
            pieces += (text[done:start], replacement)
            done = end
        pos = end
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


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
        if scan_brackets:  # `name=[...]` text: within the line, like a quoted value
            closed = _bracket_end(text, start, _line_end(text, start, n))
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


def redact_token_shapes(text: str) -> str:
    """``text`` with JWTs, API keys, URL passwords and Bearer tokens redacted."""
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "dm_" in text:
        text = _API_KEY.sub(r"\g<prefix>" + REDACTED, text)
    if "://" in text and "@" in text:
        text = _USERINFO.sub(r"\g<lead>" + REDACTED + "@", text)
    if "bearer" in text.lower():
        text = _BEARER.sub(r"\g<lead>" + REDACTED, text)
    return text


def redact_string_literals(text: str, redact_nested: Callable[[str], str]) -> str:
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
        redacted = redact_nested(content)
        return literal if redacted == content else json.dumps(redacted, ensure_ascii=False)

    return _STRING_LITERAL.sub(replace, text)


def redact_encoded_runs(text: str, redact_nested: Callable[[str], str]) -> str:
    """Redacts inside URL-encoded runs: decode, redact, encode."""

    def replace(m: re.Match[str]) -> str:
        run = m.group(0)
        if "%" not in run:
            return run
        decoded = unquote_plus(run)
        if decoded == run:
            return run
        redacted = redact_nested(decoded)
        return run if redacted == decoded else quote_plus(redacted, safe="")

    return _ENCODED_RUN.sub(replace, text)


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
