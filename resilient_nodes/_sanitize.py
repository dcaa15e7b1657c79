"""Making errors safe to record: traceback sanitising, secret redaction, normalising.

Everything here runs on the error path, so nothing here may raise: every public
function falls back to a plainer answer rather than fail.
"""

from __future__ import annotations

import os
import re
import sysconfig
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import Final

from ._text import safe_text
from .errors import ErrorCode, NodeExecutionError

__all__ = [
    "CUT_CONTEXT",
    "error_text",
    "normalize_error",
    "redact_secrets",
    "redacted_head",
    "redacted_tail",
    "sanitize_traceback",
]

_REDACTED: Final = "[REDACTED]"

# Every pattern below runs over text of any length on the error path, so none may
# backtrack super-linearly: a pattern that can start inside a run of the characters
# it repeats begins with a lookbehind that allows only the run's first character,
# repeats that must not give back are possessive, and the rest are bounded. (A
# lazy ``\b[\w-]*?`` key tried at every ``-`` of a 32 KB ``a-a-a...`` took minutes.)

# A private key, header to footer. The body runs to the next "-----" (possessive,
# so it is scanned once); the footer is optional, so a key cut short still goes.
_PEM_LABEL: Final = r"[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----"
_PEM_PRIVATE_KEY: Final = re.compile(
    rf"-----BEGIN {_PEM_LABEL}(?:[^-]|-(?!----))*+(?:-----END {_PEM_LABEL})?"
)
# The end of a key whose header was cut off (text that starts inside the body).
_PEM_TAIL: Final = re.compile(rf"\A[A-Za-z0-9+/=\s\\]*+-----END {_PEM_LABEL}")
# Credentials inside a URL: scheme, an optional user, ":" and a password that runs
# to the *last* "@" before the next "://", whitespace or quote, so an unencoded "@"
# or "/" in the password (``postgres://u:p@ss/w0rd@host``) is redacted with it.
_URL_CREDENTIALS: Final = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*+://)"
    r"[^\s/@:\"'<>`]*+:"
    r"(?:(?:[^\s:@\"'<>`]|:(?!//))*+@)++"
)
_SLACK_WEBHOOK: Final = re.compile(
    r"(?P<prefix>\bhooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9/_-]++"
)
# Credential charset for bearer-style tokens (RFC 6750 b64token, plus JWT dots).
_CREDENTIAL_CHARS: Final = r"[A-Za-z0-9._~+/=-]"
_SCHEME_CREDENTIALS: Final = re.compile(
    rf"(?i)\b(?P<scheme>bearer|basic|token)\s+(?P<token>{_CREDENTIAL_CHARS}{{8,}})"
)
_KEY_SHAPES: Final = re.compile(
    r"\bsk-[A-Za-z0-9_-]{12,}"  # OpenAI (sk-proj-...), Anthropic (sk-ant-api03-...)
    r"|\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe secret and restricted keys
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}"
    r"|\bhf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bAIza[0-9A-Za-z_-]{30,}"  # Google
    # JWT: base64url of '{"' starts both header and payload; the signature may be
    # empty (alg "none").
    r"|(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}+\.eyJ[A-Za-z0-9_-]*+\.[A-Za-z0-9_-]*+"
)
# An AWS secret access key (40 characters of base64) after its name, with or without
# a separator: ``aws_secret_access_key wJalr...``, ``"SecretAccessKey": "wJalr..."``.
_AWS_SECRET_NAMED: Final = re.compile(
    r"(?i)(?P<key>secret[ _-]?access[ _-]?key)(?P<sep>[\"']?\s*+[=:]?\s*+[\"']?)"
    r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
)
# A candidate AWS secret key on its own: exactly 40 base64 characters standing alone
# (after a space, quote, "=", ":", bracket or comma; before a space, quote, bracket,
# comma or a final "."). Whether it is one is `_looks_random`'s call.
_AWS_SECRET_SHAPE: Final = re.compile(
    r"(?<![^\s\"'`=:,;(\[{<])[A-Za-z0-9/+]{40}(?=\.?(?:[\s\"'`,;)\]}>]|\Z))"
)
# Runs that read as words: "Response", "pregel", "HTTP". Random base64 averages 12
# of its 40 characters in such runs; identifiers, paths and prose are mostly words.
_WORDLIKE: Final = re.compile(r"[A-Z]?[a-z]{3,}|[A-Z]{3,}")
_MAX_WORDLIKE: Final = 20
# Keys whose value is a secret. The secret word must end the key (optionally with a
# _key/_id/_token/_value suffix), so "max_tokens", "tokenizer" and "author" are not
# keys of secrets while "access_token", "X-Api-Key" and "DB_PASSWORD" are. The key
# starts only where a run of key characters starts, so the lazy scan for the secret
# word happens once per run, not once per "-" in it.
_SENSITIVE_NAME: Final = (
    r"(?<![\w-])(?>[\w-]*?(?:password|passwd|pwd|secret|token|api[_-]?key|apikey"
    r"|access[_-]?key|private[_-]?key|auth|authorization|credentials?|session[_-]?id"
    r"|cookie)(?:[_-]?(?:key|id|token|value))?(?![\w-]))"
)
# A quoted value may be unterminated (cut short): it is then redacted to the end of
# the line, so ``"password":"hunt`` at a cut does not leave "hunt" behind.
_KEY_VALUE: Final = re.compile(
    rf"(?i)(?P<key>{_SENSITIVE_NAME})(?P<sep>[\"']?\s*+[=:]\s*+)"
    r"(?:(?P<quoted>\"(?:[^\"\\\n]|\\[^\n]?)*+(?:\"|(?![^\n]))"
    r"|'(?:[^'\\\n]|\\[^\n]?)*+(?:'|(?![^\n])))"
    r"|(?P<bare>[^\s\"',;&}\]]++))"
)
_HOME: Final = re.compile(r"(?<![\w./-])(?:/home/[^/\s\"']+|/Users/[^/\s\"']+|/root)(?=/|\b|$)")


def _looks_like_credential(token: str) -> bool:
    # Prose after "basic"/"token" ("basic authentication", "token expired") is
    # letters only and lowercase after the first; credentials almost never are.
    return any(c.isdigit() or c in "._~+/=-" for c in token) or any(c.isupper() for c in token[1:])


def _looks_random(candidate: str) -> bool:
    """Whether a standalone 40-character base64 string is (most likely) an AWS secret key.

    It must mix lowercase, uppercase and digits (a hex digest or a base32 id does
    not) and have at most half its characters in word-like runs (identifiers,
    paths and prose are mostly words). About 94% of random keys pass; the usual
    leaks, with the key's name beside them, are caught by name regardless.
    """
    return (
        any(c.islower() for c in candidate)
        and any(c.isupper() for c in candidate)
        and any(c.isdigit() for c in candidate)
        and sum(len(word) for word in _WORDLIKE.findall(candidate)) <= _MAX_WORDLIKE
    )


def _redact_scheme(match: re.Match[str]) -> str:
    if not _looks_like_credential(match["token"]):
        return match[0]
    return f"{match['scheme']} {_REDACTED}"


def _redact_value(match: re.Match[str]) -> str:
    quoted = match["quoted"]
    if quoted is not None:
        quote, value = quoted[0], quoted[1:]
        terminated = len(quoted) > 1 and quoted.endswith(quote)
        if terminated:
            value = value[:-1]
        if not value or value.startswith("[REDACTED"):
            return match[0]
        return f"{match['key']}{match['sep']}{quote}{_REDACTED}{quote if terminated else ''}"
    value = match["bare"]
    if value.startswith("[REDACTED") or value.lower() in {"bearer", "basic", "token"}:
        # Already redacted by a more specific rule, or an auth scheme whose
        # credential the scheme rule handled.
        return match[0]
    return f"{match['key']}{match['sep']}{_REDACTED}"


def _redact_url(match: re.Match[str]) -> str:
    return f"{match['scheme']}{_REDACTED}@"


def _redact_after_prefix(match: re.Match[str]) -> str:
    return f"{match['prefix']}{_REDACTED}"


def _redact_named(match: re.Match[str]) -> str:
    return f"{match['key']}{match['sep']}{_REDACTED}"


def _redact_if_random(match: re.Match[str]) -> str:
    return _REDACTED if _looks_random(match[0]) else match[0]


def _redact_whole(_match: re.Match[str]) -> str:
    return _REDACTED


def _home(_match: re.Match[str]) -> str:
    return "~"


# In order: private keys first, while whole (key=value would otherwise take
# "private_key=-----BEGIN" and leave the body), the specific shapes before the
# generic key=value rule (which leaves a value already "[REDACTED" alone), home
# directories last.
_RULES: Final[tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...]] = (
    (_PEM_PRIVATE_KEY, _redact_whole),
    (_PEM_TAIL, _redact_whole),
    (_URL_CREDENTIALS, _redact_url),
    (_SLACK_WEBHOOK, _redact_after_prefix),
    (_SCHEME_CREDENTIALS, _redact_scheme),
    (_KEY_SHAPES, _redact_whole),
    (_AWS_SECRET_NAMED, _redact_named),
    (_AWS_SECRET_SHAPE, _redact_if_random),
    (_KEY_VALUE, _redact_value),
    (_HOME, _home),
)


def _redact(text: str, cut: int, *, keep_head: bool) -> tuple[str, int]:
    """Apply every rule to *text*; also say where offset *cut* of *text* lands.

    A cut that falls inside a redacted span is moved to its edge so that the
    kept side holds the whole replacement: after it when the head is kept,
    before it when the tail is kept. No piece of the secret is ever kept.
    """
    for pattern, replace in _RULES:
        pieces: list[str] = []
        size = last = 0
        moved: int | None = None
        for match in pattern.finditer(text):
            start, end = match.span()
            replacement = replace(match)
            if replacement == match[0]:
                continue
            if moved is None and cut < end:
                if cut <= start:
                    moved = size + cut - last
                else:
                    moved = size + start - last + (len(replacement) if keep_head else 0)
            pieces += (text[last:start], replacement)
            size += start - last + len(replacement)
            last = end
        if pieces:
            pieces.append(text[last:])
            text = "".join(pieces)
        cut = moved if moved is not None else size + cut - last
    return text, cut


def redact_secrets(text: str) -> str:
    """Replace secrets that commonly leak into error text with ``[REDACTED]``.

    Covers: credentials inside URLs (``postgres://user:pass@host`` becomes
    ``postgres://[REDACTED]@host``; the user may be empty and the password may
    hold an unencoded ``@`` or ``/``: everything up to the last ``@`` goes);
    ``Bearer``/``Basic``/``Token`` credentials; API keys by their shape (OpenAI
    and Anthropic ``sk-...``, Stripe ``sk_live_...``/``rk_live_...``, GitHub
    ``ghp_...``, Hugging Face ``hf_...``, Slack tokens, AWS ``AKIA...``,
    Google); JWTs (``eyJ...eyJ....sig``); Slack webhook URLs; PEM private keys
    (the whole block, also when cut short); AWS secret access keys after their
    name (``aws_secret_access_key``, ``SecretAccessKey``) or standing alone when
    they look random (see `_looks_random`); the values of secret-looking keys in
    ``key=value``, ``key: value`` and JSON ``"key": "value"`` form (``password``,
    ``token``, ``api_key``, ``secret``, ``authorization``...; a key only counts if
    it *ends* with the secret word, so ``max_tokens: 4096`` and ``tokenizer`` are
    left alone; a quoted value cut short is redacted to the end of its line);
    and home directories (``/home/alice``, ``/Users/alice``, ``/root``),
    replaced with ``~``.

    The work is linear in the length of *text*; to bound it as well, redact
    only what is kept with `redacted_head` or `redacted_tail`.

    Args:
        text: Any text.

    Returns:
        The text with secrets replaced.
    """
    return _redact(text, 0, keep_head=True)[0]


#: How far past a cut the patterns still look, so that a secret crossing the cut
#: is seen whole. Longer secrets than this crossing a cut are redacted from the
#: start when it is kept (open-ended patterns run to the window's end).
CUT_CONTEXT: Final = 1024


def redacted_head(text: str, limit: int) -> str:
    """The first *limit* characters of *text* with secrets redacted, in bounded work.

    Only ``limit + CUT_CONTEXT`` characters are redacted, whatever the length of
    *text*; a secret crossing the cut is redacted whole (the result may then run
    a little past *limit*).

    Args:
        text: Any text.
        limit: How many characters of the original text to keep.

    Returns:
        The redacted head of *text*.
    """
    if len(text) <= limit:
        return redact_secrets(text)
    redacted, cut = _redact(text[: limit + CUT_CONTEXT], limit, keep_head=True)
    return redacted[:cut]


def redacted_tail(text: str, limit: int) -> str:
    """The last *limit* characters of *text* with secrets redacted, in bounded work.

    The mirror of `redacted_head`: only ``limit + CUT_CONTEXT`` characters are
    redacted; a secret crossing the cut is redacted whole.

    Args:
        text: Any text.
        limit: How many characters of the original text to keep.

    Returns:
        The redacted tail of *text*.
    """
    start = len(text) - limit
    if start <= 0:
        return redact_secrets(text)
    offset = max(0, start - CUT_CONTEXT)
    redacted, cut = _redact(text[offset:], start - offset, keep_head=False)
    return redacted[cut:]


def error_text(error: object, /, limit: int = 500) -> str:
    """An error's message for a log line: bounded, secrets redacted, never raising."""
    text = safe_text(error, None)
    if len(text) <= limit:
        return redact_secrets(text)
    # Redact, then cut (in bounded work): cutting first could leave a fragment of
    # a secret too short for the patterns to recognise.
    return f"{redacted_head(text, limit)}... [{len(text) - limit} more chars]"


def _absolute(path: str) -> str:
    # os.path rather than pathlib: normalise without resolving symlinks, because
    # frame filenames are the unresolved paths modules were imported from.
    return os.path.normcase(os.path.abspath(path))  # noqa: PTH100


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {_absolute(paths[key]) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.add(_absolute(str(Path(os.__file__).parent)))
    # Longest first, so a site-packages inside the stdlib directory wins.
    return tuple(sorted(dirs, key=len, reverse=True))


_LIB_DIRS: Final = _library_dirs()


def _is_library_frame(filename: str) -> bool:
    if "site-packages" in filename or "dist-packages" in filename:
        return True
    if filename.startswith("<frozen "):
        return True
    if not PurePath(filename).is_absolute():
        return False
    norm = _absolute(filename)
    return any(norm.startswith(d + os.sep) for d in _LIB_DIRS)


def _relative_path(filename: str, base: str) -> str:
    if not PurePath(filename).is_absolute():
        return filename
    rel = os.path.relpath(filename, base)
    if rel.startswith(".."):
        # Outside the project: keep only the last two parts, never an absolute path.
        return "/".join(PurePath(filename).parts[-2:])
    return rel


def _clean_stack(te: traceback.TracebackException, base: str, drop_library: bool) -> None:
    frames = [
        frame for frame in te.stack if not (drop_library and _is_library_frame(frame.filename))
    ]
    for frame in frames:
        frame.filename = _relative_path(frame.filename, base)
    te.stack = traceback.StackSummary.from_list(frames)
    for linked in (te.__cause__, te.__context__):
        if linked is not None:
            _clean_stack(linked, base, drop_library)
    for member in te.exceptions or ():
        _clean_stack(member, base, drop_library)


def _shorten_paths(text: str, base: str) -> str:
    """Make paths in free text (messages, source lines) relative as well.

    The filesystem root is never a base: stripping ``"//"`` from the text would
    turn ``postgres://user:pw@host`` into something the URL-credential redaction
    no longer recognises (a working directory of ``/`` is common in containers).
    """
    for directory in sorted((base, *_LIB_DIRS), key=len, reverse=True):
        if directory.rstrip(os.sep):
            text = text.replace(directory + os.sep, "")
    return text


_TRUNCATED: Final = "...[truncated]...\n"


def _redacted_tail_of(text: str, max_length: int) -> str:
    # Cut before redacting (redacted_tail looks CUT_CONTEXT characters further
    # back), so a megabyte message costs no more than a short one.
    if max_length <= 0:
        return redact_secrets(text)
    tail = redacted_tail(text, max_length)
    if len(text) <= max_length and len(tail) <= max_length:
        return tail
    if max_length <= len(_TRUNCATED):
        return tail[-max_length:]
    return _TRUNCATED + tail[-(max_length - len(_TRUNCATED)) :]


def sanitize_traceback(
    error: BaseException | str,
    /,
    *,
    max_length: int = 4000,
    drop_library_frames: bool = True,
    relative_to: str | os.PathLike[str] | None = None,
) -> str:
    """Format an exception's traceback so it is safe to store and show.

    Frames from site-packages and the standard library are dropped (by default);
    frame paths are made relative to *relative_to* (the working directory by
    default), and a frame outside it keeps only its last two path parts, so no
    frame path is left absolute. In the rest of the text (messages, source
    lines) paths under *relative_to* or the Python installation are made
    relative too and home directories become ``~``. Secrets are redacted (see
    `redact_secrets`). Chained causes, contexts and exception-group members get
    the same treatment. The result is cut to at most *max_length* characters,
    keeping the end, where the error is; only that end (and `CUT_CONTEXT`
    characters before it) is redacted, so a huge message costs no more than a
    short one.

    Args:
        error: The exception (or an already formatted traceback string).
        max_length: Longest result, in characters (0 or less: no limit).
        drop_library_frames: Drop site-packages and standard-library frames.
        relative_to: Directory that paths are made relative to.

    Returns:
        The sanitized traceback text. Never raises.
    """
    try:
        base = _absolute(os.fspath(relative_to) if relative_to is not None else str(Path.cwd()))
        if isinstance(error, str):
            text = error
        else:
            te = traceback.TracebackException.from_exception(
                error, capture_locals=False, compact=True, max_group_width=10, max_group_depth=5
            )
            _clean_stack(te, base, drop_library_frames)
            text = "".join(te.format())
        text = _shorten_paths(text, base)
    except Exception:
        text = _fallback_text(error)
    return _redacted_tail_of(text, max_length)


def _fallback_text(error: object) -> str:
    try:
        return f"{type(error).__name__}: {safe_text(error)}\n"
    except Exception:  # pragma: no cover - _safe_str never raises
        return "<unformattable error>\n"


def normalize_error(value: object, /) -> BaseException:
    """Turn anything raised or passed as an error into an exception.

    An exception (including an exception group) is returned as is, so its type,
    members and chain stay inspectable. A string becomes a `NodeExecutionError`
    with that message; a mapping with a ``message`` key likewise (its ``code``, if
    it names an `ErrorCode`, is kept); anything else becomes a `NodeExecutionError`
    describing the value.

    Args:
        value: The error value.

    Returns:
        An exception instance. Never raises.
    """
    if isinstance(value, BaseException):
        return value
    if isinstance(value, type) and issubclass(value, BaseException):
        try:
            return value()
        except Exception:
            return NodeExecutionError(f"error of type {value.__name__}")
    if isinstance(value, Mapping):
        from_mapping = _from_mapping(value)
        if from_mapping is not None:
            return from_mapping
    if isinstance(value, str):
        message = safe_text(value, 10_000)
    elif value is None:
        message = "unknown error (None was given as the error)"
    else:
        message = f"non-exception error value: {safe_text(value)}"
    return NodeExecutionError(message)


def _from_mapping(value: Mapping[object, object]) -> NodeExecutionError | None:
    try:
        message, code = value.get("message"), value.get("code")
    except Exception:
        return None
    if message is None:
        return None
    error = NodeExecutionError(safe_text(message, 10_000))
    if isinstance(code, str) and code in ErrorCode.__members__:
        error.code = ErrorCode[code]
    return error
