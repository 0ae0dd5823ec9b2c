"""Signature detection of injection attempts in request paths, queries and JSON bodies.

This is a tripwire in front of code that is already safe (bound SQL parameters,
escaped templates, no shell), so it is tuned for a low false-positive rate rather
than for catching every obfuscation: each signature needs the *grammar* of an
attack (a quote closing a string and then an operator, a tag with an event
handler, a shell separator and then a known command), not just a frightening
word, so that "select the best option; drop me a line" or "Tom & Jerry" pass.

Every signature is one alternation in a single precompiled regex, so a string is
scanned once. All repetition is bounded (``{0,N}``) and no quantified group can
match the same text in two ways, so the scan is linear in the input: the worst
case is a small constant times its length, even on hostile input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, unquote

from digitalme.host.security_events import SecurityEventType

__all__ = [
    "DEFAULT_UNSCANNED_FIELDS",
    "ThreatType",
    "detect_threat",
    "is_json_content_type",
    "scan_json_body",
    "scan_path",
    "scan_query",
]


class ThreatType(StrEnum):
    """What a signature found; values equal the matching :class:`SecurityEventType`."""

    SQL_INJECTION = SecurityEventType.SQL_INJECTION.value
    XSS_SCRIPT = SecurityEventType.XSS_SCRIPT.value
    COMMAND_INJECTION = SecurityEventType.COMMAND_INJECTION.value
    PATH_TRAVERSAL = SecurityEventType.PATH_TRAVERSAL.value

    @property
    def event_type(self) -> SecurityEventType:
        """The security event to emit for this threat."""
        return SecurityEventType(self.value)


DEFAULT_UNSCANNED_FIELDS: frozenset[str] = frozenset(
    {"password", "current_password", "new_password", "old_password"}
)
"""JSON keys whose values are never scanned: a password is hashed, never
interpolated, and refusing one because it contains ``'--`` would lock people out."""

# SQL keywords are case-insensitive, so these run under (?i:...).
_SQL = [
    # A closing quote, OR/AND and a tautology: ' OR '1'='1, " or "a"="a, ' or 1=1--
    r"""['"`]\s{0,10}(?:or|and|\|\||&&)(?:\s{1,10}|(?=['"]))"""
    r"""(?P<sq>['"]?)(?P<sv>\w{1,32})(?P=sq)\s{0,10}(?:=|like\s)\s{0,10}(?P=sq)(?P=sv)\b""",
    # The same without a quote, for numeric parameters: id=1 or 1=1
    r"\b(?:or|and)\s{1,10}(?P<nv>\d{1,10})\s{0,10}=\s{0,10}(?P=nv)\b",
    # A closing quote and a comment that swallows the rest of the query: admin'--
    r"""['"`]\s{0,5}(?:--|#|/\*)[\s\-]{0,10}$""",
    r"""['"`]\s{0,5};\s{0,5}(?:--|#|/\*)""",
    # A statement stacked after a quote or semicolon: 1; DROP TABLE users
    r"""[;'"`)]\s{0,10}(?:drop|truncate|alter)\s{1,10}"""
    r"(?:table|database|schema|view|procedure|function|trigger|index)\b",
    r"""[;'"`)]\s{0,10}(?:delete\s{1,10}from|insert\s{1,10}into|update)\s{1,10}"""
    r"""[\w`"\[\].]{1,64}\s{0,10}(?:where\b|values\b|select\b|\(|;|--|#|$"""
    r"""|set\s{1,10}[\w`"\[\].]{1,64}\s{0,10}=)""",
    r"""[;'"`)]\s{0,10}(?:exec|execute)\s{1,10}(?:xp_|sp_|master\.|\(|@)""",
    r"""[;'"`)]\s{0,10}shutdown\s{0,10}(?:--|#|;|$)""",
    # UNION-based extraction, including the /**/ and + spellings of a space
    r"\bunion(?:\s|\+|/\*[^*]{0,64}\*/){1,20}(?:(?:all|distinct)(?:\s|\+|/\*[^*]{0,64}\*/){1,20})?"
    r"select\b",
    # Time-based blind injection and procedures only an attacker calls
    r"""(?:\b(?:and|or)|\|\||&&|[;'"`])\s{0,10}sleep\s{0,5}\(\s{0,5}\d{1,3}\s{0,5}\)""",
    r"\bpg_sleep\s{0,5}\(",
    r"\bbenchmark\s{0,5}\(\s{0,5}\d{1,12}\s{0,5},",
    r"""\bwaitfor\s{1,10}(?:delay|time)\s{1,10}['"]""",
    r"\b(?:xp_cmdshell|sp_executesql|sp_oacreate|sp_makewebtask|dbms_pipe\.receive_message)\b",
]

# Tag and attribute names are case-insensitive in HTML.
_XSS = [
    r"</?script\b",
    r"<(?:iframe|frame|frameset|embed|applet)\b",
    r"<(?:base|meta)\s[^<>]{0,256}?\b(?:href|http-equiv)\s{0,5}=",
    # Any tag carrying an event handler: <img src=x onerror=...>, <svg/onload=...>
    r"""<[a-z][a-z0-9-]{0,20}\b[^<>]{0,256}?[\s/"'`]on[a-z]{3,30}\s{0,5}=""",
    # Breaking out of a quoted attribute into a handler: " onmouseover=alert(1)
    r"""["'`][\s/]{1,10}on[a-z]{3,30}\s{0,5}=\s{0,5}\S""",
    # Script URLs; "JavaScript: The Good Parts" has a space after the colon
    r"\b(?:java|vb)\s{0,3}script\s{0,3}:(?=\S)",
    r"\bdata\s{0,3}:\s{0,3}text/html\b",
]

# Shell command names are case-sensitive, so these are not under (?i:...): "ID"
# and "Cat" are words, "id" and "cat" after a pipe are commands.
_SEPARATOR = r"(?:[;&|]|\$\()"  # a command separator, a pipe or a substitution
_COMMANDS = (
    r"(?:id|whoami|uname|cat|ls|rm|curl|wget|nc|ncat|netcat|bash|sh|zsh|dash|ksh|python[23]?"
    r"|perl|ruby|php|echo|sleep|ping|nslookup|dig|env|printenv|pwd|hostname|ifconfig|chmod"
    r"|base64|touch|kill)"
)
_COMMAND = [
    _SEPARATOR + r"\s{0,10}(?:sudo\s{1,5})?rm\s{1,10}-[a-zA-Z]{0,5}[rfRF]",
    _SEPARATOR + r"\s{0,10}(?:cat|head|tail|more|less|nl|tac|strings|xxd|base64)\s{1,10}"
    r"""(?:-[\w-]{1,10}\s{1,10}){0,3}['"]?(?:/|~/|\.\./|\$\w)""",
    _SEPARATOR + r"""\s{0,10}(?:wget|curl|tftp)\b[^;|&\n`)]{1,200}?(?:://|\.[a-z]{2,})""",
    _SEPARATOR + r"\s{0,10}(?:nc|ncat|netcat)\s{1,10}-[a-zA-Z]{0,5}[elvp]",
    _SEPARATOR + r"\s{0,10}(?:ba|z|da|k)?sh\s{1,10}-[a-z]{0,3}c\b",
    r"\|\s{0,10}(?:ba|z|da|k)?sh\s{0,10}(?:$|[;&|#])",
    _SEPARATOR + r"\s{0,10}(?:/usr)?/bin/\w",
    _SEPARATOR + r"\s{0,10}(?:whoami|uname\s{1,5}-[a-z]{1,5}|ifconfig|ipconfig)\b",
    _SEPARATOR + r"\s{0,10}(?:chmod\s{1,10}[0-7+]|mkfifo\s|nohup\s|crontab\s{1,5}-"
    r"|powershell\s{1,10}-|cmd(?:\.exe)?\s{1,5}/c\b)",
    r"\$\(\s{0,5}" + _COMMANDS + r"\b",
    # Backticks are also markdown's inline code, so `id` is only a command when
    # it stands alone or sits between shell separators: "x=`id`", not "the `id` field"
    r"(?:^|[;&|=(<>])\s{0,10}`\s{0,5}"
    + _COMMANDS
    + r"(?:\s[^`\n]{0,200})?`\s{0,10}(?:$|[;&|)#>])",
]

_DOT = r"(?:\.|%2e)"
_SLASH = r"(?:/|\\|%2f|%5c)"
_PATH = [
    # Two levels up in any spelling: ../../, ..\..\, ..%2f..%2f, %2e%2e/%2e%2e/
    f"(?:{_DOT}{_DOT}{_SLASH}){{2}}",
    # One level up into a well-known system location
    _DOT + _DOT + _SLASH + r"(?:etc|windows|winnt|proc|root|boot|\.ssh|\.env\b|\.git\b)",
    r"/etc/(?:passwd|shadow|gshadow|sudoers|master\.passwd)\b",
    r"/proc/self/(?:environ|cmdline|fd|maps|mem)\b",
    r"\b(?:win|boot|system)\.ini\b",
    r"%c0%af|%c1%9c|%c0%ae",  # overlong UTF-8 slashes and dots
]


def _alternation(patterns: list[str]) -> str:
    return "|".join(f"(?:{pattern})" for pattern in patterns)


_THREATS = re.compile(
    f"(?P<SQL_INJECTION>(?i:{_alternation(_SQL)}))"
    f"|(?P<XSS_SCRIPT>(?i:{_alternation(_XSS)}))"
    f"|(?P<COMMAND_INJECTION>{_alternation(_COMMAND)})"
    f"|(?P<PATH_TRAVERSAL>(?i:{_alternation(_PATH)}))"
)
_PERCENT_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")


def detect_threat(text: str) -> ThreatType | None:
    """The first threat found in ``text``, or None when it looks benign."""
    match = _THREATS.search(text)
    if match is None:
        return None
    assert match.lastgroup is not None  # every alternative is a named group
    return ThreatType[match.lastgroup]


def _decoded_variants(text: str) -> Iterator[str]:
    # One extra decoding round catches %252e-style double encoding; more rounds
    # would start decoding what a handler will itself treat as literal text.
    yield text
    if "%" in text and _PERCENT_ESCAPE.search(text):
        yield unquote(text)


def scan_path(path: str) -> ThreatType | None:
    """Scan a request path as the server decoded it (and once more if still encoded)."""
    for variant in _decoded_variants(path):
        if (threat := detect_threat(variant)) is not None:
            return threat
    return None


def scan_query(query_string: bytes) -> ThreatType | None:
    """Scan every key and value of a raw query string, decoded once and, if needed, twice."""
    if not query_string:
        return None
    text = query_string.decode("latin-1")
    for key, value in parse_qsl(text, keep_blank_values=True, encoding="utf-8"):
        for part in (key, value):
            for variant in _decoded_variants(part):
                if (threat := detect_threat(variant)) is not None:
                    return threat
    return None


def is_json_content_type(content_type: bytes) -> bool:
    """``application/json`` or any ``application/*+json``, parameters ignored."""
    media = content_type.partition(b";")[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


def scan_json_body(
    body: bytes, unscanned_fields: Collection[str] = DEFAULT_UNSCANNED_FIELDS
) -> ThreatType | None:
    """Scan every key and string value of a JSON document, at any depth.

    A body that is not valid JSON is not a threat: the handler answers it with a
    validation error. Values under ``unscanned_fields`` (compared lowercased) are
    skipped. The walk is iterative, so nesting depth costs no stack.
    """
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    pending: list[Any] = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if (threat := detect_threat(item)) is not None:
                return threat
        elif isinstance(item, dict):
            for key, value in item.items():
                if (threat := detect_threat(key)) is not None:
                    return threat
                if key.lower() not in unscanned_fields:
                    pending.append(value)
        elif isinstance(item, list):
            pending.extend(item)
    return None
