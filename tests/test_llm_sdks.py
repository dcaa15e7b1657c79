"""Provider errors and streams through the real OpenAI and Anthropic SDK clients.

The clients talk HTTP to a local server on 127.0.0.1 (`_provider_server`) that
replays recorded provider responses. The SDKs' own retries are off
(``max_retries=0``), as the README recommends under our policy.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import anyio
import pytest
from _provider_server import (
    ANTHROPIC_BAD_KEY,
    ANTHROPIC_OVERLOADED,
    ANTHROPIC_TOO_LONG,
    OPENAI_BAD_KEY,
    OPENAI_CONTEXT,
    OPENAI_QUOTA,
    STALL,
    ProviderServer,
    Reply,
    anthropic_error,
    anthropic_message,
    anthropic_stream,
    openai_completion,
    openai_error,
    openai_rate_limited,
    openai_stream,
)

from resilient_nodes import (
    ErrorCategory,
    NodeStreamInterruptedError,
    NodeTimeoutError,
    Policy,
    classify_error,
    create_node,
    get_error_category,
)
from resilient_nodes.testing import no_backoff, record_sleeps

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

pytestmark = [
    pytest.mark.anyio,
    # The SDKs leave their own inner async generators (SSE decoding, httpcore's
    # body) unexhausted when a stream ends, also in plain use without us; trio
    # reports each when it is collected. Only those are ignored.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <async_generator object "
        "(SSEDecoder|AsyncStream|HTTP11ConnectionByteStream|Stream)"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

MESSAGES = [{"role": "user", "content": "Tell me a story."}]
# Real time, kept short: the server stalls for real.
BOUND = 0.3


@pytest.fixture
def provider() -> Iterator[ProviderServer]:
    """A fresh local provider per test; stalled streams are released at the end."""
    server = ProviderServer()
    server.start()
    yield server
    server.stop()


def openai_client(provider: ProviderServer) -> Any:
    return openai.AsyncOpenAI(api_key="sk-test", base_url=f"{provider.url}/v1", max_retries=0)


def anthropic_client(provider: ProviderServer) -> Any:
    return anthropic.AsyncAnthropic(api_key="sk-test", base_url=provider.url, max_retries=0)


def on_context_length(error: Exception) -> bool:
    return get_error_category(error) is ErrorCategory.CONTEXT_LENGTH


# --- provider errors ------------------------------------------------------------------------


async def test_openai_429_waits_retry_after_ms(provider: ProviderServer) -> None:
    """A throttled 429's ``retry-after-ms`` sets the backoff; the retry then succeeds."""
    provider.queue(openai_rate_limited({"retry-after-ms": "250"}), openai_completion("ok"))
    async with openai_client(provider) as client:

        async def ask() -> str:
            reply = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
            return str(reply.choices[0].message.content)

        with record_sleeps() as delays:
            assert await Policy.llm(backoff=0.01, jitter=0).wrap(ask)() == "ok"
    assert delays == [0.25]
    assert len(provider.requests) == 2


async def test_anthropic_429_waits_retry_after_seconds(provider: ProviderServer) -> None:
    """An Anthropic 429 ``retry-after`` (seconds) sets the backoff."""
    throttled = anthropic_error(429, "rate_limit_error", "Number of requests has exceeded")
    throttled.headers = {"retry-after": "2"}
    provider.queue(throttled, anthropic_message("ok"))
    async with anthropic_client(provider) as client:

        async def ask() -> str:
            reply = await client.messages.create(
                model="claude-test", max_tokens=10, messages=MESSAGES
            )
            return str(reply.content[0].text)

        with record_sleeps() as delays:
            assert await Policy.llm(backoff=0.01, jitter=0).wrap(ask)() == "ok"
    assert delays == [2.0]


async def test_insufficient_quota_is_neither_retried_nor_fallen_back(
    provider: ProviderServer,
) -> None:
    """A used-up quota 429 reaches the caller at once, as the SDK raised it."""
    provider.queue(OPENAI_QUOTA)
    backup_calls: list[int] = []

    async def backup() -> str:
        backup_calls.append(1)
        return "backup"

    async with openai_client(provider) as client:

        async def ask() -> str:
            await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
            return "never"

        policy = Policy.fallback(backup) | Policy.llm()
        with no_backoff(), pytest.raises(openai.RateLimitError) as caught:
            await policy.wrap(ask)()
    assert classify_error(caught.value).category is ErrorCategory.QUOTA
    assert len(provider.requests) == 1
    assert backup_calls == []


async def test_context_length_routes_to_a_larger_model(provider: ProviderServer) -> None:
    """``context_length_exceeded`` is not retried; ``on=`` sends it to the large model."""
    provider.queue(OPENAI_CONTEXT, openai_completion("long answer", model="gpt-large"))
    async with openai_client(provider) as client:

        async def ask(model: str = "gpt-small") -> str:
            reply = await client.chat.completions.create(model=model, messages=MESSAGES)
            return str(reply.choices[0].message.content)

        async def large() -> str:
            return await ask("gpt-large")

        policy = Policy.fallback(large, on=on_context_length) | Policy.llm()
        with no_backoff():
            assert await policy.wrap(ask)() == "long answer"
    assert [r["body"]["model"] for r in provider.requests] == ["gpt-small", "gpt-large"]


async def test_anthropic_prompt_too_long_is_a_context_length_error(
    provider: ProviderServer,
) -> None:
    """Anthropic says it in words on a 400; that is read too, and not retried."""
    provider.queue(ANTHROPIC_TOO_LONG)
    async with anthropic_client(provider) as client:

        async def ask() -> None:
            await client.messages.create(model="claude-test", max_tokens=10, messages=MESSAGES)

        with no_backoff(), pytest.raises(anthropic.BadRequestError) as caught:
            await Policy.llm().wrap(ask)()
    assert get_error_category(caught.value) is ErrorCategory.CONTEXT_LENGTH
    assert len(provider.requests) == 1


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
async def test_401_is_neither_retried_nor_fallen_back(provider: ProviderServer, sdk: str) -> None:
    """A bad key fails the same everywhere: no retry, no fallback."""
    provider.queue(OPENAI_BAD_KEY if sdk == "openai" else ANTHROPIC_BAD_KEY)
    backup_calls: list[int] = []

    async def backup() -> None:
        backup_calls.append(1)

    client = openai_client(provider) if sdk == "openai" else anthropic_client(provider)
    async with client:

        async def ask() -> None:
            if sdk == "openai":
                await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
            else:
                await client.messages.create(model="claude-test", max_tokens=10, messages=MESSAGES)

        with no_backoff(), pytest.raises(Exception) as caught:
            await (Policy.fallback(backup) | Policy.llm()).wrap(ask)()
    assert type(caught.value).__name__ == "AuthenticationError"
    assert get_error_category(caught.value) is ErrorCategory.AUTH
    assert len(provider.requests) == 1
    assert backup_calls == []


async def test_503_with_x_should_retry_false(provider: ProviderServer) -> None:
    """The server's ``x-should-retry: false`` stops our retry; a fallback still serves."""
    unavailable = openai_error(503, "The server is overloaded.", "server_error", None)
    unavailable.headers = {"x-should-retry": "false"}
    provider.queue(unavailable)
    async with openai_client(provider) as client:

        async def ask() -> str:
            await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
            return "never"

        with no_backoff(), pytest.raises(openai.InternalServerError):
            await Policy.llm(attempts=3).wrap(ask)()
        assert len(provider.requests) == 1

        async def backup() -> str:
            return "backup"

        with no_backoff():
            assert await (Policy.fallback(backup) | Policy.llm()).wrap(ask)() == "backup"
    assert len(provider.requests) == 2


async def test_529_overloaded_is_retried(provider: ProviderServer) -> None:
    """Anthropic's 529 ``overloaded_error`` is transient: the retry gets the answer."""
    provider.queue(ANTHROPIC_OVERLOADED, anthropic_message("hi"))
    async with anthropic_client(provider) as client:

        async def ask() -> str:
            reply = await client.messages.create(
                model="claude-test", max_tokens=10, messages=MESSAGES
            )
            return str(reply.content[0].text)

        with no_backoff():
            assert await Policy.llm().wrap(ask)() == "hi"
    assert len(provider.requests) == 2


# --- streams ----------------------------------------------------------------------------------


def openai_texts(chunks: list[Any]) -> list[str]:
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


async def test_openai_stream_stalling_before_the_first_token_is_retried(
    provider: ProviderServer,
) -> None:
    """No token within ``first_item``: the attempt is abandoned (closed) and retried."""
    provider.queue(openai_stream(STALL), openai_stream("Once", " upon", " a time"))
    opened: list[Any] = []
    async with openai_client(provider) as client:

        async def tokens() -> AsyncIterator[Any]:
            stream = await client.chat.completions.create(
                model="gpt-test", messages=MESSAGES, stream=True
            )
            opened.append(stream)
            return stream  # type: ignore[no-any-return]

        policy = Policy.llm(attempts=2) | Policy.stream(first_item=BOUND, idle=BOUND)
        chunks: list[Any] = []
        with no_backoff():
            async with policy.wrap(tokens)() as stream:
                chunks = [chunk async for chunk in stream]
    assert openai_texts(chunks) == ["Once", " upon", " a time"]
    assert len(provider.requests) == 2
    assert opened[0].response.is_closed  # the stalled attempt's connection was released


async def test_anthropic_stream_stalling_mid_stream_is_interrupted(
    provider: ProviderServer,
) -> None:
    """After tokens reached the caller a stall is an interruption: no retry, no duplicate."""
    provider.queue(anthropic_stream("Once", " upon", STALL), anthropic_stream("never"))
    opened: list[Any] = []
    async with anthropic_client(provider) as client:

        async def events() -> AsyncIterator[Any]:
            stream = await client.messages.create(
                model="claude-test", max_tokens=10, messages=MESSAGES, stream=True
            )
            opened.append(stream)
            return stream  # type: ignore[no-any-return]

        policy = Policy.llm(attempts=3) | Policy.stream(first_item=BOUND, idle=BOUND)
        got: list[Any] = []
        start = anyio.current_time()
        with no_backoff(), pytest.raises(NodeStreamInterruptedError) as caught:
            async for event in policy.wrap(events)():
                got.append(event)  # noqa: PERF401 - kept one by one across the failure
        elapsed = anyio.current_time() - start
    assert [e.type for e in got] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
    ]
    assert caught.value.items_delivered == 4
    assert isinstance(caught.value.__cause__, NodeTimeoutError)
    assert len(provider.requests) == 1
    assert opened[0].response.is_closed
    assert elapsed < BOUND + 2.0


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
async def test_error_event_mid_stream(provider: ProviderServer, sdk: str) -> None:
    """An error event after tokens is the SDK's error, chained under the interruption."""
    if sdk == "openai":
        error = {"error": {"message": "The server had an error", "type": "server_error"}}
        provider.queue(openai_stream("Once", error))
    else:
        provider.queue(anthropic_stream("Once", ("error", "overloaded_error")))
    client = openai_client(provider) if sdk == "openai" else anthropic_client(provider)
    async with client:

        async def items() -> AsyncIterator[Any]:
            if sdk == "openai":
                return await client.chat.completions.create(  # type: ignore[no-any-return]
                    model="gpt-test", messages=MESSAGES, stream=True
                )
            return await client.messages.create(  # type: ignore[no-any-return]
                model="claude-test", max_tokens=10, messages=MESSAGES, stream=True
            )

        with no_backoff(), pytest.raises(NodeStreamInterruptedError) as caught:
            async for _ in (Policy.llm() | Policy.stream(idle=BOUND)).wrap(items)():
                pass
    cause = caught.value.__cause__
    assert type(cause).__module__.split(".")[0] == sdk
    assert classify_error(cause).category is ErrorCategory.SERVER
    assert classify_error(caught.value).category is ErrorCategory.SERVER
    assert not classify_error(caught.value).retryable
    assert len(provider.requests) == 1


async def test_outside_cancellation_of_an_sdk_stream(provider: ProviderServer) -> None:
    """The caller's cancel scope cuts a stalled SDK stream: a cancellation, and closed."""
    provider.queue(openai_stream("Once", STALL))
    opened: list[Any] = []
    async with openai_client(provider) as client:

        async def tokens() -> AsyncIterator[Any]:
            stream = await client.chat.completions.create(
                model="gpt-test", messages=MESSAGES, stream=True
            )
            opened.append(stream)
            return stream  # type: ignore[no-any-return]

        got: list[Any] = []
        with anyio.move_on_after(BOUND) as scope:
            async for chunk in (Policy.llm() | Policy.stream(idle=30)).wrap(tokens)():
                got.append(chunk)  # noqa: PERF401 - kept one by one across the cancel
    assert scope.cancelled_caught
    assert openai_texts(got) == ["Once"]
    assert opened[0].response.is_closed


# --- a LangChain chat model in a LangGraph node ------------------------------------------------


class State(TypedDict, total=False):
    prompt: str
    text: str
    errors: Annotated[list[Any], operator.add]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # LangGraph runs on asyncio
async def test_langchain_chat_model_streaming_in_a_langgraph_node() -> None:
    """A fake chat model stalls once before its first token; the node gets every token once."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, StateGraph

    calls: list[int] = []

    class StallsOnce(GenericFakeChatModel):
        async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:  # type: ignore[override]
            calls.append(1)
            if len(calls) == 1:
                await anyio.sleep_forever()
            async for chunk in super()._astream(*args, **kwargs):
                yield chunk

    model = StallsOnce(messages=iter([AIMessage(content="once upon a time")] * 3))
    tokens = (Policy.llm(attempts=2) | Policy.stream(first_item=BOUND, idle=BOUND)).wrap(
        model.astream
    )

    async def write(state: State) -> State:
        pieces = [chunk.content async for chunk in tokens(state["prompt"])]
        return {"text": "".join(pieces)}

    builder = StateGraph(State)
    builder.add_node("write", create_node(write, name="write"))
    builder.add_edge(START, "write")
    builder.add_edge("write", END)
    with no_backoff():
        result = await builder.compile().ainvoke({"prompt": "story", "errors": []})
    assert result["text"] == "once upon a time"
    assert result["errors"] == []
    assert len(calls) == 2


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_node_records_an_interrupted_stream() -> None:
    """A stream that stalls after tokens is captured in state, not retried."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, StateGraph

    class StallsMidway(GenericFakeChatModel):
        async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:  # type: ignore[override]
            count = 0
            async for chunk in super()._astream(*args, **kwargs):
                yield chunk
                count += 1
                if count == 2:
                    await anyio.sleep_forever()

    model = StallsMidway(messages=iter([AIMessage(content="once upon a time")]))
    tokens = (Policy.llm(attempts=3) | Policy.stream(idle=BOUND)).wrap(model.astream)

    async def write(state: State) -> State:
        return {"text": "".join([chunk.content async for chunk in tokens(state["prompt"])])}

    builder = StateGraph(State)
    builder.add_node("write", create_node(write, name="write"))
    builder.add_edge(START, "write")
    builder.add_edge("write", END)
    with no_backoff():
        result = await builder.compile().ainvoke({"prompt": "story", "errors": []})
    [record] = result["errors"]
    assert record["category"] == "timeout"
    assert "failed after 2 items" in record["message"]


def test_replies_are_plain_data() -> None:
    """The recorded responses are what the server sends (a sanity check of the fixtures)."""
    assert OPENAI_QUOTA.status == 429
    assert OPENAI_QUOTA.body["error"]["code"] == "insufficient_quota"
    assert Reply().status == 200
