"""Sanitising behaviour that mutation testing showed no other test pinned.

`tests/mutation/run.py` (``tox -e mutation``) is the run that found the gaps.
`_library_dirs` is called here directly: the module calls it once, at import.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from resilient_nodes import _sanitize
from resilient_nodes._sanitize import (
    _absolute,
    _is_library_frame,
    _library_dirs,
    error_text,
    normalize_error,
    redact_secrets,
    redacted_head,
    redacted_tail,
    sanitize_traceback,
)
from resilient_nodes.errors import ErrorCode

_HERE = Path(__file__).parent

# --- cutting around secrets ----------------------------------------------------------

_TWO_THEN_TEXT = "password=one1 password=two2 and the plain tail"
_TEXT_BETWEEN = "password=one1 plain words password=two2 end"


@pytest.mark.parametrize(
    ("text", "limit", "head"),
    [
        # both secrets before the cut: the cut moves by both replacements
        (_TWO_THEN_TEXT, 35, "password=[REDACTED] password=[REDACTED] and the"),
        # the cut between two secrets: it moves by the first one only
        (_TEXT_BETWEEN, 20, "password=[REDACTED] plain "),
        # the cut inside the second secret: it is kept whole
        (_TEXT_BETWEEN, 30, "password=[REDACTED] plain words password=[REDACTED]"),
    ],
)
def test_redacted_head_cut_after_earlier_secrets(text: str, limit: int, head: str) -> None:
    """The cut of `redacted_head` is shifted by every replacement made before it."""
    assert redacted_head(text, limit) == head


@pytest.mark.parametrize(
    ("text", "limit", "tail"),
    [
        (_TEXT_BETWEEN, 20, "ds password=[REDACTED] end"),
        (_TWO_THEN_TEXT, 38, "password=[REDACTED] password=[REDACTED] and the plain tail"),
        (_TWO_THEN_TEXT, 15, " the plain tail"),
        # the cut three characters into a secret at the very start of the text
        ("password=hunter2 and more text", 27, "password=[REDACTED] and more text"),
        ("abc", 2, "bc"),
    ],
)
def test_redacted_tail_cut_after_earlier_secrets(text: str, limit: int, tail: str) -> None:
    """`redacted_tail` keeps exactly *limit* characters, or the whole secret they cut."""
    assert redacted_tail(text, limit) == tail


# --- key=value and auth-scheme rules -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ('password: "x"', 'password: "[REDACTED]"'),  # a one-character value
        ('password: ""', 'password: ""'),  # nothing to hide
        ('password: "hunt', 'password: "[REDACTED]'),  # cut short: no closing quote added
        # already redacted by the key-shape rule: left as that rule left it
        ('"api_key": "sk-proj-abcdefghijklmnop and more"', '"api_key": "[REDACTED] and more"'),
        # the scheme rule took the credential; the scheme word is not a secret
        ("authorization: Basic dXNlcjpwYXNzd29yZA==", "authorization: Basic [REDACTED]"),
        ("auth=Token abcdefgh1234", "auth=Token [REDACTED]"),
    ],
)
def test_key_value_redaction_edges(text: str, redacted: str) -> None:
    """Quoted, empty, unterminated and already-redacted values of secret keys."""
    assert redact_secrets(text) == redacted


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("Bearer abcdefgh12", "Bearer [REDACTED]"),  # digits, no capitals
        ("token aBcdefghijk", "token [REDACTED]"),  # a capital as second character
        ("basic Xylophones", "basic Xylophones"),  # a capitalised word is prose
        ("Bearer abcdefghij", "Bearer abcdefghij"),
    ],
)
def test_scheme_credential_shapes(text: str, redacted: str) -> None:
    """After an auth scheme, a digit, symbol or inner capital makes a credential."""
    assert redact_secrets(text) == redacted


def test_standalone_aws_secret_at_the_word_limit() -> None:
    """A 40-character key with exactly 20 characters in word-like runs still counts."""
    candidate = "Abcdefghij1Klmnopqrst2a3b4c5d6e7f8g9h0i1"
    assert len(candidate) == 40
    assert redact_secrets(f"key {candidate} end") == "key [REDACTED] end"


# --- error_text and normalize_error --------------------------------------------------


def test_error_text_bounds() -> None:
    """error_text keeps 500 characters by default and counts exactly what it cut."""
    assert error_text("x" * 500) == "x" * 500
    assert error_text("x" * 501) == "x" * 500 + "... [1 more chars]"
    assert error_text("x" * 600, limit=100) == "x" * 100 + "... [500 more chars]"


def test_normalize_error_bounds_messages() -> None:
    """A string or mapping message is kept up to 10,000 characters, then marked."""
    bounded = "x" * 10_000 + "... [10000 more chars]"
    assert str(normalize_error("x" * 20_000)) == bounded
    from_mapping = normalize_error({"message": "x" * 20_000, "code": "NODE_TIMEOUT"})
    assert str(from_mapping) == bounded
    assert from_mapping.code is ErrorCode.NODE_TIMEOUT  # type: ignore[attr-defined]
    assert str(normalize_error(None)) == "unknown error (None was given as the error)"


# --- tracebacks ----------------------------------------------------------------------


def test_library_dirs_are_the_installations_longest_first() -> None:
    """The library directories: sysconfig's four and the stdlib's, longest first."""
    paths = sysconfig.get_paths()
    expected = {_absolute(paths[key]) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    expected.add(_absolute(str(Path(os.__file__).parent)))
    dirs = _library_dirs()
    assert set(dirs) == expected
    assert len(dirs) == len(expected)
    assert [len(d) for d in dirs] == sorted((len(d) for d in dirs), reverse=True)


@pytest.mark.parametrize(
    ("filename", "library"),
    [
        ("/usr/lib/python3/dist-packages/requests/api.py", True),
        ("/opt/app/venv/site-packages/httpx/_client.py", True),
        ("<frozen importlib._bootstrap>", True),
        (os.__file__, True),
        ("app/module.py", False),
        ("/srv/app/main.py", False),
    ],
)
def test_library_frames(filename: str, library: bool) -> None:
    """site-packages, dist-packages, frozen and stdlib frames are library frames."""
    assert _is_library_frame(filename) is library


def _raise_from(cause: BaseException) -> ValueError:
    try:
        raise ValueError("outer") from cause
    except ValueError as error:
        return error


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def test_causes_and_group_members_are_relative_to_the_given_directory() -> None:
    """A cause's and a group member's frames are made relative to *relative_to* too."""
    here = f'  File "{Path(__file__).name}", line '
    chained = _raise_from(_raised(KeyError("inner")))
    group = _raised(ExceptionGroup("group", [_raised(KeyError("member"))]))
    for error in (chained, group):
        text = sanitize_traceback(error, relative_to=_HERE, max_length=0)
        frames = [line.lstrip(" |") for line in text.splitlines() if 'File "' in line]
        assert len(frames) == 2
        assert all(("  " + frame).startswith(here) for frame in frames)


def test_traceback_layout_and_no_locals() -> None:
    """The traceback reads as Python prints it, and never shows local variables."""
    hidden_local = "local-value-never-shown"

    def fail() -> None:
        raise ValueError(hidden_local[:5])

    try:
        fail()
    except ValueError as error:
        text = sanitize_traceback(error, max_length=0)
    lines = text.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].startswith('  File "')
    assert lines[-1] == "ValueError: local"
    assert "never-shown" not in text


def test_group_width_and_depth_are_bounded() -> None:
    """Groups show 10 members and 5 levels; the rest is summarised."""
    wide = ExceptionGroup("many", [ValueError(i) for i in range(12)])
    text = sanitize_traceback(wide, max_length=0)
    assert "| and 2 more exceptions" in text
    assert "ValueError: 9" in text
    assert "ValueError: 10" not in text
    deep: BaseException = ValueError("leaf")
    for level in range(7):
        deep = ExceptionGroup(f"level{level}", [deep])
    text = sanitize_traceback(deep, max_length=0)
    assert "| ... (max_group_depth is 5)" in text
    assert "level2" in text
    assert "level1" not in text


def test_a_formatted_traceback_string_is_kept() -> None:
    """A traceback given as text is sanitised as text, not described as a str."""
    text = "Traceback (most recent call last):\nValueError: x\n"
    assert sanitize_traceback(text) == text


class _BadPath:
    def __fspath__(self) -> str:
        raise ValueError("no path")


class _NamelessMeta(type):
    @property
    def __name__(cls) -> str:  # type: ignore[override]
        raise RuntimeError("no name")


class _NamelessError(Exception, metaclass=_NamelessMeta):
    pass


def test_fallback_when_formatting_fails() -> None:
    """If formatting fails the type and message are kept, or a placeholder if even that fails."""
    assert sanitize_traceback(ValueError("boom"), relative_to=_BadPath()) == "ValueError: boom\n"
    nameless = sanitize_traceback(_NamelessError("boom"), relative_to=_BadPath())
    assert nameless == "<unformattable error>\n"


@pytest.mark.parametrize(
    ("text", "max_length", "result"),
    [
        ("abc", 1, "c"),
        ("x" * 30, 30, "x" * 30),
        ("y" * 100, 18, "y" * 18),  # no room for the marker: the end alone
        ("z" * 100, 30, "...[truncated]...\n" + "z" * 12),
    ],
)
def test_traceback_length_limits(text: str, max_length: int, result: str) -> None:
    """The result is at most *max_length* long, marked as cut when there is room."""
    assert sanitize_traceback(text, max_length=max_length) == result


def test_paths_in_messages_are_shortened(tmp_path: Path) -> None:
    """A path under *relative_to* in the message itself loses that prefix."""
    base = _absolute(str(tmp_path))
    error = ValueError(f"cannot open {base}{os.sep}data{os.sep}file.txt")
    text = sanitize_traceback(error, relative_to=tmp_path)
    assert text.endswith(f"ValueError: cannot open data{os.sep}file.txt\n")


def test_paths_are_shortened_longest_directory_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Directories are stripped longest first, by length and not by name.

    ``/aaaa`` sorts before ``/bc`` by name but is longer: stripping it first joins
    ``/b`` and ``c/`` into ``/bc/``, which is then stripped too.
    """
    monkeypatch.setattr(_sanitize, "_LIB_DIRS", ("/bc", "/aaaa"))
    text = sanitize_traceback("x /b/aaaa/c/y", relative_to="/zz")
    assert text == "x y"
