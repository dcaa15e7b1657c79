"""A local stand-in for the OpenAI and Anthropic HTTP APIs, replaying recorded responses.

`ProviderServer` is a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (a free port)
in a daemon thread. Each test queues `Reply` objects; every request takes the
next one (the last repeats), and is recorded. A reply is a JSON body with a
status and headers, or a server-sent-event stream whose steps can stall
(until the test ends) or send an error event. The bodies below are shaped as the
providers document and send them (error envelopes, chunk and event payloads).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

import attrs

STALL: Final = "stall"
"""A stream step: send nothing more until the test ends (the connection stays open)."""


@attrs.define
class Reply:
    """One recorded response.

    Attributes:
        status: The HTTP status.
        body: A JSON body (for a plain response).
        headers: Extra response headers.
        events: For a stream: ``(event name or None, data)`` pairs, or `STALL`.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = attrs.field(factory=dict)
    events: list[Any] | None = None


@attrs.define
class ProviderServer:
    """The server, its queue of replies and the requests it saw."""

    replies: list[Reply] = attrs.field(factory=list)
    requests: list[dict[str, Any]] = attrs.field(factory=list)
    release: threading.Event = attrs.field(factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def next_reply(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(request)
            if len(self.replies) > 1:
                return self.replies.pop(0)
            return self.replies[0]

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                reply = server.next_reply({"path": self.path, "body": body})
                try:
                    if reply.events is None:
                        self._plain(reply)
                    else:
                        self._stream(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away: what a cut stream does

            def _plain(self, reply: Reply) -> None:
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.flush()
                for step in reply.events or ():
                    if step == STALL:
                        server.release.wait(30)
                        return
                    event, data = step
                    text = "" if event is None else f"event: {event}\n"
                    payload = data if isinstance(data, str) else json.dumps(data)
                    self.wfile.write(f"{text}data: {payload}\n\n".encode())
                    self.wfile.flush()
                self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# --- recorded OpenAI responses -------------------------------------------------------------


def openai_error(status: int, message: str, kind: str, code: str | None) -> Reply:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Reply(status, body)


OPENAI_QUOTA: Final = openai_error(
    429,
    "You exceeded your current quota, please check your plan and billing details.",
    "insufficient_quota",
    "insufficient_quota",
)
OPENAI_CONTEXT: Final = openai_error(
    400,
    "This model's maximum context length is 8192 tokens. However, your messages "
    "resulted in 9000 tokens. Please reduce the length of the messages.",
    "invalid_request_error",
    "context_length_exceeded",
)
OPENAI_BAD_KEY: Final = openai_error(
    401, "Incorrect API key provided: sk-test.", "invalid_request_error", "invalid_api_key"
)


def openai_rate_limited(headers: dict[str, str]) -> Reply:
    reply = openai_error(
        429,
        "Rate limit reached for gpt-test on requests per min (RPM): Limit 3.",
        "requests",
        "rate_limit_exceeded",
    )
    reply.headers = headers
    return reply


def openai_completion(text: str, model: str = "gpt-test") -> Reply:
    return Reply(
        200,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
    )


def openai_chunk(text: str) -> tuple[None, dict[str, Any]]:
    return (
        None,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-test",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        },
    )


def openai_stream(*steps: Any) -> Reply:
    """A chat completion stream: text pieces, `STALL`, or an error dict; then ``[DONE]``."""
    events: list[Any] = []
    for step in steps:
        if step == STALL:
            events.append(STALL)
        elif isinstance(step, dict):
            events.append((None, step))
        else:
            events.append(openai_chunk(step))
    events.append((None, "[DONE]"))
    return Reply(200, events=events)


# --- recorded Anthropic responses ----------------------------------------------------------


def anthropic_error(status: int, kind: str, message: str) -> Reply:
    return Reply(status, {"type": "error", "error": {"type": kind, "message": message}})


ANTHROPIC_OVERLOADED: Final = anthropic_error(529, "overloaded_error", "Overloaded")
ANTHROPIC_BAD_KEY: Final = anthropic_error(401, "authentication_error", "invalid x-api-key")
ANTHROPIC_TOO_LONG: Final = anthropic_error(
    400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"
)


def anthropic_message(text: str) -> Reply:
    return Reply(
        200,
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": text}],
            "model": "claude-test",
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        },
    )


def anthropic_stream(*steps: Any) -> Reply:
    """A messages stream: text deltas, `STALL`, or ``("error", kind)`` for an error event."""
    events: list[Any] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "claude-test",
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 1, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    for step in steps:
        if step == STALL:
            events.append(STALL)
        elif isinstance(step, tuple):
            events.append(
                ("error", {"type": "error", "error": {"type": step[1], "message": "Overloaded"}})
            )
        else:
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": step},
                    },
                )
            )
    events.extend(
        [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 3},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    )
    return Reply(200, events=events)
