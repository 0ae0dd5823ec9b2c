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

# Each signature is (first characters, rest of the pattern, starts a word). The
# first character is kept a plain literal so that the combined regex (built
# below) lets the engine skip quickly to the few places where an attack could
# start; with a capturing group or a flag at the front it would instead try every
# signature at every position, about twenty times slower on ordinary text.
_Signature = tuple[str, str, bool]

_QUOTE = "'\"`"
_TAUTOLOGY = (  # ' OR '1'='1, " or "a"="a, ' or 1=1--, ' or ''='
    r"""(?:or|and|\|\||&&)(?:\s{1,10}|(?=['"]))(?:"""
    r"""(?P<q>['"]?)(?P<v>\w{1,32})(?P=q)\s{0,10}(?:=|like\s)\s{0,10}(?P=q)(?P=v)\b"""
    r"""|(?:''|"")\s{0,10}=\s{0,10}['"])"""
)
_NAME = r"""(?:[\w.]{1,64}|`[^`]{1,64}`|"[^"]{1,64}"|\[[^\]]{1,64}\])"""  # a table or column
_SLEEP = r"sleep\s{0,5}\(\s{0,5}\d{1,3}\s{0,5}\)"
_STACKED = (  # a statement or a delay after a quote or a semicolon: 1; DROP TABLE users
    r"(?:drop|truncate|alter)\s{1,10}"
    r"(?:table|database|schema|view|procedure|function|trigger|index)\b"
    rf"|delete\s{{1,10}}from\s{{1,10}}{_NAME}\s{{0,10}}(?:where\b|;|--|#|$)"
    rf"|insert\s{{1,10}}into\s{{1,10}}{_NAME}\s{{0,10}}(?:\(|values\b|select\b)"
    rf"|update\s{{1,10}}{_NAME}\s{{1,10}}set\s{{1,10}}{_NAME}\s{{0,10}}="
    r"|(?:exec|execute)\s{1,10}(?:xp_|sp_|master\.|\(|@)"
    r"|shutdown\s{0,10}(?:--|#|;|$)"
    r"|" + _SLEEP
)
# A comment that swallows the rest of the query: admin'--, admin'#, x';--
_COMMENT = r"(?:--|#|/\*)[\s\-]{0,10}$|;\s{0,5}(?:--|#|/\*)"
_AFTER_QUOTE = "|".join((_TAUTOLOGY, _STACKED, _COMMENT))
# SQL is case-insensitive: these are lower case and run over lower-cased text.
_SQL: list[_Signature] = [
    (_QUOTE, r"\s{0,10}(?=[oa|&dtaeius#/;-])(?:" + _AFTER_QUOTE + ")", False),
    (";)|&", r"\s{0,10}(?=[dtaeius])(?:" + _STACKED + ")", False),
    # Without a quote, for numeric parameters: id=1 or 1=1, 1 and sleep(5)
    ("o", r"r\s{1,10}(?:(?P<v>\d{1,10})\s{0,10}=\s{0,10}(?P=v)\b|" + _SLEEP + ")", True),
    ("a", r"nd\s{1,10}(?:(?P<v>\d{1,10})\s{0,10}=\s{0,10}(?P=v)\b|" + _SLEEP + ")", True),
    # UNION-based extraction, including the /**/ and + spellings of a space
    (
        "u",
        r"nion(?:\s|\+|/\*[^*]{0,64}\*/){1,20}"
        r"(?:(?:all|distinct)(?:\s|\+|/\*[^*]{0,64}\*/){1,20})?select\b",
        True,
    ),
    # Delays and procedures that only an attacker calls
    ("p", r"g_sleep\s{0,5}\(", True),
    ("b", r"enchmark\s{0,5}\(\s{0,5}\d{1,12}\s{0,5},", True),
    ("w", r"""aitfor\s{1,10}(?:delay|time)\s{1,10}['"]""", True),
    ("x", r"p_cmdshell\b", True),
    ("s", r"p_(?:executesql|oacreate|makewebtask)\b", True),
    ("d", r"bms_(?:pipe\.receive_message|lock\.sleep)\b", True),
]

# HTML tag and attribute names are case-insensitive too.
_XSS: list[_Signature] = [
    ("<", r"/?script\b", False),
    ("<", r"(?:iframe|frame|frameset|embed|applet)\b", False),
    ("<", r"(?:base|meta)\s[^<>]{0,256}?\b(?:href|http-equiv)\s{0,5}=", False),
    # Any tag carrying an event handler: <img src=x onerror=...>, <svg/onload=...>
    ("<", r"""[a-z][a-z0-9-]{0,20}\b[^<>]{0,256}?[\s/"'`]on[a-z]{3,30}\s{0,5}=""", False),
    # Breaking out of a quoted attribute into a handler: " onmouseover=alert(1)
    (_QUOTE, r"[\s/]{1,10}on[a-z]{3,30}\s{0,5}=\s{0,5}\S", False),
    # Script URLs; "JavaScript: The Good Parts" has a space after the colon
    ("j", r"ava\s{0,3}script\s{0,3}:(?=\S)", True),
    ("v", r"bscript\s{0,3}:(?=\S)", True),
    ("d", r"ata\s{0,3}:\s{0,3}text/html\b", True),
]

# Shell command names are case-sensitive, so these run over the original text:
# "ID" and "Cat" are words, while "id" and "cat" after a pipe are commands.
_SEPARATORS = ";&|"
_COMMANDS = (
    r"(?:id|whoami|uname|cat|ls|rm|curl|wget|nc|ncat|netcat|bash|sh|zsh|dash|ksh|python[23]?"
    r"|perl|ruby|php|echo|sleep|ping|nslookup|dig|env|printenv|pwd|hostname|ifconfig|chmod"
    r"|base64|touch|kill)"
)
# Backticks are also markdown's inline code, so `id` is only a command when it
# stands alone or sits between shell separators: "x=`id`", not "the `id` field".
_BACKTICKED = r"`\s{0,5}" + _COMMANDS + r"(?:\s[^`\n]{0,200})?`\s{0,10}(?:$|[;&|)#>])"
_COMMAND_AFTER_SEPARATOR = (
    r"(?:sudo\s{1,5})?rm\s{1,10}-[a-zA-Z]{0,5}[rfRF]"
    r"|(?:cat|head|tail|more|less|nl|tac|strings|xxd|base64)\s{1,10}"
    r"""(?:-[\w-]{1,10}\s{1,10}){0,3}['"]?(?:/|~/|\.\./|\$\w)"""
    r"|(?:wget|curl|tftp)\b[^;|&\n`)]{1,200}?(?:://|\.[a-z]{2,})"
    r"|(?:nc|ncat|netcat)\s{1,10}-[a-zA-Z]{0,5}[elvp]"
    r"|(?:ba|z|da|k)?sh\s{1,10}-[a-z]{0,3}c\b"
    r"|(?:/usr)?/bin/\w"
    r"|(?:whoami|uname\s{1,5}-[a-z]{1,5}|ifconfig|ipconfig)\b"
    r"|chmod\s{1,10}[0-7+]|mkfifo\s|nohup\s|crontab\s{1,5}-|powershell\s{1,10}-"
    r"|cmd(?:\.exe)?\s{1,5}/c\b"
    r"|" + _BACKTICKED
)
_COMMAND: list[_Signature] = [
    (_SEPARATORS, r"\s{0,10}(?=[a-z/`])(?:" + _COMMAND_AFTER_SEPARATOR + ")", False),
    ("|", r"\s{0,10}(?=[bzdks])(?:ba|z|da|k)?sh\s{0,10}(?:$|[;&|#])", False),  # curl x | sh
    ("$", r"\(\s{0,5}" + _COMMANDS + r"\b", False),
    ("=(<>", r"\s{0,10}" + _BACKTICKED, False),
]
# The same at the very start of the text, which has no separator to anchor on.
_LEADING_COMMAND = re.compile(r"\s{0,10}" + _BACKTICKED)

_DOTS = r"(?:\.|%2e)"
_SLASH = r"(?:/|\\|%2f|%5c)"
_UP = _DOTS + _SLASH  # the rest of "../" once its first "." or "%" is consumed
_PATH: list[_Signature] = [
    # Two levels up in any spelling: ../../, ..\..\, ..%2f..%2f, %2e%2e/%2e%2e/
    (".", _UP + _DOTS + _DOTS + _SLASH, False),
    ("%", "2e" + _UP + _DOTS + _DOTS + _SLASH, False),
    # One level up into a well-known system location
    (".", _UP + r"(?:etc|windows|winnt|proc|root|boot|\.ssh|\.env\b|\.git\b)", False),
    ("%", "2e" + _UP + r"(?:etc|windows|winnt|proc|root|boot|\.ssh|\.env\b|\.git\b)", False),
    ("/", r"etc/(?:passwd|shadow|gshadow|sudoers|master\.passwd)\b", False),
    ("/", r"proc/self/(?:environ|cmdline|fd|maps|mem)\b", False),
    ("w", r"in\.ini\b", True),
    ("b", r"oot\.ini\b", True),
    ("s", r"ystem\.ini\b", True),
    ("%", r"c0%af|c1%9c|c0%ae", False),  # overlong UTF-8 slashes and dots
]

# Signatures of case-insensitive languages are written in lower case and run over
# the lower-cased text: a plain literal is much cheaper for the engine to reject
# than a case-insensitive one, and shell commands, which are case-sensitive, then
# run over the original text.
_CASELESS = (ThreatType.SQL_INJECTION, ThreatType.XSS_SCRIPT, ThreatType.PATH_TRAVERSAL)
_CASED = (ThreatType.COMMAND_INJECTION,)
_SIGNATURES: dict[ThreatType, list[_Signature]] = {
    ThreatType.SQL_INJECTION: _SQL,
    ThreatType.XSS_SCRIPT: _XSS,
    ThreatType.COMMAND_INJECTION: _COMMAND,
    ThreatType.PATH_TRAVERSAL: _PATH,
}
_GROUP_NAME = re.compile(r"\(\?P([<=])(\w+)([>)])")


def _compile(categories: tuple[ThreatType, ...]) -> re.Pattern[str]:
    """One regex of the form ``a(?:...|...)|b(?:...)|...``, one branch per first character."""
    bodies: dict[str, tuple[list[str], list[str]]] = {}  # char -> (word starts, others)
    for category in categories:
        for first_chars, rest, word_start in _SIGNATURES[category]:
            for char in first_chars:
                word_starts, others = bodies.setdefault(char, ([], []))
                # Each copy of a signature needs its own back-reference group names.
                suffix = f"_{ord(char)}_{len(word_starts)}_{len(others)}"
                renamed = _GROUP_NAME.sub(rf"(?P\g<1>\g<2>{suffix}\g<3>", rest)
                (word_starts if word_start else others).append(renamed)
    branches = []
    for char, (word_starts, others) in bodies.items():
        alternatives = list(others)
        if word_starts:  # the character before the literal must not be a word character
            alternatives.append(r"(?<!\w.)(?:" + "|".join(word_starts) + ")")
        branches.append(re.escape(char) + "(?:" + "|".join(alternatives) + ")")
    return re.compile("|".join(branches))


_ANY_CASELESS = _compile(_CASELESS)
_ANY_CASED = _compile(_CASED)
_EACH_CASELESS = [(category, _compile((category,))) for category in _CASELESS]
_PERCENT_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")


def detect_threat(text: str) -> ThreatType | None:
    """The first threat found in ``text`` (the leftmost one), or None when it looks benign."""
    lowered = text.lower()
    caseless = _ANY_CASELESS.search(lowered)
    cased = _ANY_CASED.search(text) or _LEADING_COMMAND.match(text)
    if cased is not None and (caseless is None or cased.start() <= caseless.start()):
        return ThreatType.COMMAND_INJECTION
    if caseless is None:
        return None
    # Attacks are rare, so naming the category can afford a second look.
    start = caseless.start()
    for category, pattern in _EACH_CASELESS:
        if pattern.match(lowered, start):
            return category
    raise AssertionError("unreachable: the combined pattern is the union of its categories")


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
