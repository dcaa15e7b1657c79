"""Sanitised tracebacks, secret redaction and error normalisation."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import cattrs
import pytest
from _helpers import spy_on_redaction

from resilient_nodes._sanitize import (
    CUT_CONTEXT,
    error_text,
    normalize_error,
    redact_secrets,
    redacted_head,
    redacted_tail,
    sanitize_traceback,
)
from resilient_nodes.errors import ErrorCode, NodeExecutionError

_ABSOLUTE = re.compile(r"(?<![\w.~])/(?:home|root|usr|tmp|work|opt|Users|var)\b")

_PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEA1b2c3d4e5f6g7h8i9j0kLmNoPqRsTuVwXyZ+/AbCdEf\n"
    "GhIjKlMnOpQrStUvWxYz0123456789+/AbCdEfGhIjKlMnOpQ==\n"
    "-----END RSA PRIVATE KEY-----"
)


def _raise_through_json() -> BaseException:
    try:
        json.loads("{not json")
    except ValueError as error:
        return error
    raise AssertionError  # pragma: no cover


def test_library_frames_dropped_and_paths_relative() -> None:
    """Stdlib frames (json) are dropped; our frame is relative to the cwd."""
    text = sanitize_traceback(_raise_through_json())
    assert "json/decoder.py" not in text
    assert "json/__init__.py" not in text
    assert 'File "tests/test_sanitize.py"' in text
    assert "JSONDecodeError" in text
    assert str(Path.cwd()) not in text
    assert not _ABSOLUTE.search(text), text


def test_library_frames_kept_when_asked_but_never_absolute() -> None:
    """With library frames kept, their paths are still not absolute."""
    text = sanitize_traceback(_raise_through_json(), drop_library_frames=False)
    assert "json/decoder.py" in text
    assert sys.prefix not in text
    assert not _ABSOLUTE.search(text), text


def test_site_packages_frames_dropped() -> None:
    """Frames from site-packages (here cattrs) are dropped."""
    try:
        cattrs.structure("x", int)
    except ValueError as error:
        text = sanitize_traceback(error)
    assert "cattrs/" not in text
    assert "converters.py" not in text
    assert "site-packages" not in text


def test_relative_to(tmp_path: Path) -> None:
    """Paths are made relative to `relative_to`; frames outside keep two parts only."""
    text = sanitize_traceback(_raise_through_json(), relative_to=Path.cwd() / "tests")
    assert 'File "test_sanitize.py"' in text
    text = sanitize_traceback(_raise_through_json(), relative_to=tmp_path)
    assert 'File "tests/test_sanitize.py"' in text
    assert str(tmp_path) not in text


def test_paths_in_messages_made_relative() -> None:
    """An absolute path under the cwd inside a message is made relative."""
    missing = Path.cwd() / "data" / "missing.txt"
    try:
        missing.open()
    except FileNotFoundError as error:
        text = sanitize_traceback(error)
    assert "data/missing.txt" in text
    assert str(Path.cwd()) not in text


def test_max_length_keeps_the_tail() -> None:
    """A long traceback is cut from the front, keeping the error line at the end."""
    error = RuntimeError("x" * 5000 + " THE END")
    text = sanitize_traceback(error, max_length=200)
    assert len(text) == 200
    assert text.startswith("...[truncated]...")
    assert text.rstrip().endswith("THE END")
    assert len(sanitize_traceback(error, max_length=5)) == 5
    assert len(sanitize_traceback(error, max_length=0)) > 5000


def test_chained_causes_and_groups_sanitized() -> None:
    """Causes, contexts and group members are sanitised (frames and secrets)."""
    try:
        try:
            json.loads("{")
        except ValueError as inner:
            raise RuntimeError("api_key=abc123 failed") from inner
    except RuntimeError as outer:
        chained = outer
    text = sanitize_traceback(chained)
    assert "json/decoder.py" not in text
    assert "abc123" not in text
    assert "direct cause" in text
    group = ExceptionGroup("many", [chained, ValueError("password=hunter2")])
    text = sanitize_traceback(group)
    assert "hunter2" not in text
    assert "abc123" not in text
    assert "json/decoder.py" not in text
    assert not _ABSOLUTE.search(text)


def test_string_input_is_redacted_and_cut() -> None:
    """A preformatted traceback string is redacted and truncated too."""
    text = sanitize_traceback("Traceback: token=abcdef " + "y" * 100, max_length=40)
    assert len(text) == 40
    assert "abcdef" not in sanitize_traceback("Traceback: token=abcdef")


def test_unformattable_error_falls_back() -> None:
    """If formatting fails, a plain `Type: message` line comes back instead of raising."""

    class BrokenError(Exception):
        @property
        def __traceback__(self) -> object:  # type: ignore[override]
            raise RuntimeError("no traceback")

    text = sanitize_traceback(BrokenError("boom"))
    assert "Broken" in text


def test_unprintable_exception() -> None:
    """An exception whose __str__ raises still formats."""

    class UnprintableError(Exception):
        def __str__(self) -> str:
            raise RuntimeError

    assert "Unprintable" in sanitize_traceback(UnprintableError())


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("openai error: invalid key sk-proj-AbC123dEf456GhI789jKl0", "AbC123dEf456"),
        ("key sk-ant-api03-Zx9_yW8-vU7tS6rQ5pO4nM3lK2jI1hG0fE-dCbA", "Zx9_yW8"),
        ("headers: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "eyJhbGci"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpw"),
        ("login failed: password=hunter2", "hunter2"),
        ('payload {"api_key": "abc123", "model": "x"}', "abc123"),
        ("token: 9f8e7d6c5b4a", "9f8e7d6c5b4a"),
        ("could not connect to postgres://user:s3cret@db.internal/app", "s3cret"),
        ("GET https://user:tok123@example.com/x failed", "tok123"),
        ("aws key AKIAIOSFODNN7EXAMPLE rejected", "AKIAIOSFODNN7EXAMPLE"),
        ("github ghp_16C7e42F292c6912E7710c838347Ae178B4a denied", "16C7e42F292c"),
        ("X-Api-Key: live_0123456789", "live_0123456789"),
        ("client_secret='correct horse battery staple'", "horse"),
        ("DB_PASSWORD=s3cr3t; next", "s3cr3t"),
        ("cannot reach redis://:Secret42@cache:6379/0", "Secret42"),
        ("could not connect to postgres://u:p@ss/w0rd@host/db", "w0rd"),
        ("could not connect to postgres://u:p@ss/w0rd@host/db", "p@ss"),
        ("aws_secret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtn"),
        ("env: AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtn"),
        ('{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}', "wJalrXUtn"),
        ("signature mismatch for 2O76UMFxFkM+R5Kjp1vRt/1fjORS+6ilI8ihN5KX.", "2O76UMFx"),
        (f"loaded {_PEM} from disk", "MIIEowIBAAKCAQEA"),
        (f"settings: {{'private_key': {_PEM!r}}}", "MIIEowIBAAKCAQEA"),
        ("hub rejected hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567", "AbCdEfGhIj"),
        ("stripe: invalid key sk_live_51H8abcdefGHIJKL0123456789", "51H8abcdef"),
        ("stripe: invalid key rk_live_51H8abcdefGHIJKL0123456789", "51H8abcdef"),
        ("POST https://hooks.slack.com/services/T0001/B0002/XyZ123abcDEF456 failed", "XyZ123abc"),
        ("id_token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl expired", "eyJzdWIi"),
        ("unsigned eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0. rejected", "eyJzdWIi"),
        ('body {"password":"hunter2-cut-off', "hunter2"),
        ("""body {"password": "it's a \\"quoted\\" secret"}""", "quoted"),
    ],
)
def test_secrets_redacted(text: str, leaked: str) -> None:
    """Realistic leaked secrets are replaced with [REDACTED]."""
    redacted = redact_secrets(text)
    assert leaked not in redacted
    assert "[REDACTED]" in redacted


def test_redaction_keeps_structure() -> None:
    """Redaction keeps the key, scheme and host so the message stays useful."""
    assert redact_secrets("password=hunter2&user=bob") == "password=[REDACTED]&user=bob"
    assert redact_secrets("postgres://user:pass@host/db") == "postgres://[REDACTED]@host/db"
    assert redact_secrets("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x.y") == (
        "Authorization: Bearer [REDACTED]"
    )
    assert redact_secrets('{"api_key": "abc123"}') == '{"api_key": "[REDACTED]"}'
    assert redact_secrets("token=sk-proj-abcdefghijklmnop1234") == "token=[REDACTED]"
    assert redact_secrets("redis://:pw@cache:6379") == "redis://[REDACTED]@cache:6379"
    assert redact_secrets("postgres://u:p@ss/w0rd@host/db") == "postgres://[REDACTED]@host/db"
    assert redact_secrets("go https://a.io/login?next=https://u:pw@b.io/x") == (
        "go https://a.io/login?next=https://[REDACTED]@b.io/x"
    )
    assert redact_secrets(f"key:\n{_PEM}\nnext line") == "key:\n[REDACTED]\nnext line"
    assert redact_secrets("https://hooks.slack.com/services/T1/B2/abc") == (
        "https://hooks.slack.com/services/[REDACTED]"
    )
    assert redact_secrets("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") == (
        "aws_secret_access_key = [REDACTED]"
    )


def test_home_paths_become_tilde() -> None:
    """Home directories become ~, also /root; lookalikes are left alone."""
    assert redact_secrets('File "/home/alice/proj/x.py"') == 'File "~/proj/x.py"'
    assert redact_secrets("/Users/bob/a") == "~/a"
    assert redact_secrets("/root/.cache/x") == "~/.cache/x"
    assert redact_secrets("/rootfs/x and https://example.com/home/alice/page") == (
        "/rootfs/x and https://example.com/home/alice/page"
    )


@pytest.mark.parametrize(
    "text",
    [
        "the tokenizer failed to load the vocabulary",
        "max_tokens: 4096 exceeds the model limit",
        "usage: total_tokens=1234, prompt_tokens=1000",
        "author: Alice Smith",
        "basic authentication required",
        "Token expired, please log in again",
        "the password is too short",
        "Authorization header missing",
        "task-management failed on sklearn-compatible estimator",
        "KeyError: 'name' not found",
        "checkout of 3f786850e387550fdab836ed7e6dc881de23001b failed",
        "raised in HTTPConnectionPool2ResponseHandlerFactor",
        "module langgraph/pregel/Runner3/ChannelsWrite/x not found",
        "route api/v1/Users/1234/Orders/5678/LineItems/ returned 404",
        "class ThisIsAVeryLongCamelCaseIdentifier2With3 is abstract",
        "hf_hub_download failed; sk_live keys are not allowed in tests",
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
        "see https://example.com/users/a@b.com and ssh://git@host:22/repo",
        "the header eyJ is base64 for a JSON object",
    ],
)
def test_plain_prose_left_alone(text: str) -> None:
    """Ordinary text that merely mentions tokens or passwords is not redacted."""
    assert redact_secrets(text) == text


def test_normalize_error_exceptions_are_returned_as_is() -> None:
    """Exceptions and groups are the same object, members still inspectable."""
    error = ValueError("x")
    assert normalize_error(error) is error
    group = ExceptionGroup("g", [TimeoutError(), KeyError("k")])
    normalized = normalize_error(group)
    assert normalized is group
    assert isinstance(normalized, ExceptionGroup)
    assert [type(e) for e in normalized.exceptions] == [TimeoutError, KeyError]
    interrupt = KeyboardInterrupt()
    assert normalize_error(interrupt) is interrupt


def test_normalize_error_classes() -> None:
    """An exception class is instantiated; one needing arguments becomes our error."""
    assert type(normalize_error(TimeoutError)) is TimeoutError

    class NeedsArgsError(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(a, b)

    normalized = normalize_error(NeedsArgsError)
    assert isinstance(normalized, NodeExecutionError)
    assert "NeedsArgsError" in str(normalized)


def test_normalize_error_values() -> None:
    """Strings, mappings, None and other objects become NodeExecutionError."""
    assert str(normalize_error("it broke")) == "it broke"
    from_mapping = normalize_error({"message": "quota", "code": "CIRCUIT_OPEN"})
    assert isinstance(from_mapping, NodeExecutionError)
    assert str(from_mapping) == "quota"
    assert from_mapping.code is ErrorCode.CIRCUIT_OPEN
    assert normalize_error({"message": "m", "code": "nope"}).code is ErrorCode.UNKNOWN  # type: ignore[attr-defined]
    assert "{'other': 1}" in str(normalize_error({"other": 1}))
    assert "None" in str(normalize_error(None))
    assert "42" in str(normalize_error(42))


def test_normalize_error_hostile_values() -> None:
    """Objects whose str() raises, and mappings whose get() raises, are handled."""

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError

        __repr__ = __str__

    assert "Unprintable" in str(normalize_error(Unprintable()))

    class BadMapping(dict[str, object]):
        def get(self, key: str, default: object = None) -> object:
            raise RuntimeError

    assert isinstance(normalize_error(BadMapping()), NodeExecutionError)


def test_url_credentials_redacted_when_working_directory_is_root() -> None:
    """With relative_to='/' (a container's usual cwd) URL passwords are still redacted."""
    try:
        raise ConnectionError("cannot reach postgres://app:hunter2@db:5432/orders")
    except ConnectionError as error:
        text = sanitize_traceback(error, relative_to="/")
    assert "hunter2" not in text
    assert "postgres://" in text


@pytest.mark.parametrize(
    "text",
    [
        "a-" * 32_000,  # a lazy key scan at every "-" took minutes on 32 KB of this
        "-".join(["AbC_dEf0123456789"] * 4_000),  # base64url-like, with "-"
        "a://x:" * 10_000,  # URL starts that never reach an "@"
        "a://:" + "b@" * 32_000,  # a password with an "@" at every other character
        "secret_access_key " * 3_500,
        "eyJ-" * 16_000,
        "-----BEGIN PRIVATE KEY-----" * 2_000,  # headers without a footer
        "password" * 8_000,
        'password:"' * 6_000,
        "password" + " " * 64_000,
        "/home/" * 10_000,
        " Ab1" * 16_000,
        ":" * 64_000,
    ],
    ids=lambda text: repr(text[:12]),
)
def test_redaction_is_linear_on_hostile_text(text: str) -> None:
    """Text built to make the patterns backtrack is redacted in well under a second.

    64 KB each; the old patterns took from seconds to minutes on some of these
    (quadratic backtracking). The bound is generous: linear patterns take tens of
    milliseconds here.
    """
    started = time.perf_counter()
    redact_secrets(text)
    assert time.perf_counter() - started < 1.0


_STRADDLING = [
    ("password=hunter2secretvalue", "hunter2secretvalue"),
    ('{"password": "correct horse battery staple"}', "correct horse battery staple"),
    ("postgres://admin:hunter2secret@db/app", "admin:hunter2secret"),
    ("redis://:Secret42longer@cache/0", "Secret42longer"),
    ("sk-proj-AbC123dEf456GhI789jKl0", "AbC123dEf456GhI789jKl0"),
    ("Authorization: Bearer Zm9vYmFyYmF6cXV4MTIzNDU2", "Zm9vYmFyYmF6cXV4MTIzNDU2"),
    ("aws_secret_access_key 2O76UMFxFkM+R5Kjp1vRt/1fjORS+6ilI8ihN5KX", "2O76UMFxFkM+R5Kjp1vRt"),
    (_PEM, "MIIEowIBAAKCAQEA1b2c3d4e5f6g7h8i9j0kLmNoPqRsTuVwXyZ+/AbCdEfGhIjKlMn"),
]


def _fragments(secret: str, size: int = 5) -> list[str]:
    return [
        secret[i : i + size] for i in range(len(secret) - size + 1) if secret[i : i + size].strip()
    ]


@pytest.mark.parametrize(("text", "secret"), _STRADDLING, ids=[s[:12] for s, _ in _STRADDLING])
def test_a_cut_never_leaves_part_of_a_secret(text: str, secret: str) -> None:
    """Whatever character a head or tail cut falls on, no 5-character piece of the secret is kept."""
    filler = "." * 50
    whole = f"{filler} {text} {filler}"
    for limit in range(len(filler), len(whole) - len(filler) + 1):
        kept = redacted_head(whole, limit) + " | " + redacted_tail(whole, len(whole) - limit)
        for fragment in _fragments(secret):
            assert fragment not in kept, (limit, fragment, kept)


def test_a_cut_keeps_the_text_around_a_secret() -> None:
    """A cut inside a secret keeps its whole marker; text away from the cut is kept as is."""
    text = "before password=hunter2secret after"
    assert redacted_head(text, 20) == "before password=[REDACTED]"
    assert redacted_tail(text, 20) == "password=[REDACTED] after"
    assert redacted_head(text, 7) == "before "
    assert redacted_tail(text, 6) == " after"
    assert redacted_head("short", 10) == "short"


def test_a_key_cut_off_its_header_is_still_redacted() -> None:
    """Keeping the tail of a long private key whose header is far before the cut redacts the rest."""
    body = "\n".join(["MIIJKAIBAAKCAgEAxYz0123456789abcdefGHIJKLMNOPqrstuvWXYZ+/AbCdEfGh"] * 60)
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"
    text = f"key: {pem}\nValueError: bad key"
    kept = redacted_tail(text, 1000)
    assert "MIIJKAIB" not in kept
    assert "xYz0123456789" not in kept
    assert kept.endswith("[REDACTED]\nValueError: bad key")


def test_redacting_a_cut_text_reads_a_bounded_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kept part and CUT_CONTEXT characters beside it are handed to the patterns."""
    seen = spy_on_redaction(monkeypatch)
    huge = "a-" * 500_000
    redacted_head(huge, 300)
    redacted_tail(huge, 300)
    sanitize_traceback(RuntimeError(huge), max_length=300)
    assert seen == [300 + CUT_CONTEXT] * 3


def test_error_text_cut_inside_a_secret_keeps_none_of_it() -> None:
    """A log line's message cut at its limit does not keep the start of a key or password."""
    for offset in range(1, 25):
        key = error_text(RuntimeError("x" * (500 - offset) + " sk-proj-AbC123dEf456GhI789jKl0"))
        assert "proj-" not in key, offset
        assert key.endswith("more chars]")
        url = error_text(RuntimeError("x" * (500 - offset) + ",redis://app:hunter2secret@cache/0"))
        assert "hunter" not in url, offset
    assert error_text(RuntimeError("password=hunter2")) == "password=[REDACTED]"
