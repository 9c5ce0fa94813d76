"""A local server that speaks OpenAI's chat-completions streaming wire format.

The model name picks the behaviour: ``ok`` streams the reply with a usage
chunk when ``stream_options.include_usage`` is set; ``rate-limited`` answers
429 with ``Retry-After``; ``bad-key`` 401; ``server-error`` 500; ``broken``
sends a few chunks and then drops the connection mid-body; ``error-event`` sends
a few chunks and then an error event in the stream, as OpenAI does when a
generation fails after it started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from services.localdev.kafka import free_port

REPLY = ["Hello", ",", " world", "!", " Kafka", " keeps", " every", " token", "."]
RETRY_AFTER_S = 7


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_test",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _error(
    status: int, message: str, kind: str, code: str | None, headers: dict[str, str] | None = None
) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


class BrokenStreamError(Exception):
    """Raised mid-body so the server drops the connection."""


class OpenAIServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"body": body, "auth": request.headers.get("authorization")})
        model = body["model"]
        if model == "rate-limited":
            return _error(
                429,
                "Rate limit reached for requests",
                "requests",
                "rate_limit_exceeded",
                {"retry-after": str(RETRY_AFTER_S)},
            )
        if model == "bad-key":
            return _error(
                401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key"
            )
        if model == "server-error":
            return _error(500, "The server had an error", "server_error", None)
        return StreamingResponse(self._stream(body), media_type="text/event-stream")

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        model = body["model"]
        limit = body.get("max_tokens") or len(REPLY)
        words = REPLY[:limit]
        yield (
            b"data: " + orjson.dumps(_chunk(model, {"role": "assistant", "content": ""})) + b"\n\n"
        )
        for i, word in enumerate(words):
            if model == "broken" and i == 3:
                raise BrokenStreamError
            if model == "error-event" and i == 3:
                error = {"message": "The model overloaded", "type": "server_error", "code": None}
                yield b"data: " + orjson.dumps({"error": error}) + b"\n\n"
                return
            yield b"data: " + orjson.dumps(_chunk(model, {"content": word})) + b"\n\n"
        finish = "length" if limit < len(REPLY) else "stop"
        yield b"data: " + orjson.dumps(_chunk(model, {}, finish)) + b"\n\n"
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": 11,
                "completion_tokens": len(words),
                "total_tokens": 11 + len(words),
            }
            final = {**_chunk(model, {}), "choices": [], "usage": usage}
            yield b"data: " + orjson.dumps(final) + b"\n\n"
        yield b"data: [DONE]\n\n"


@contextmanager
def openai_server() -> Iterator[tuple[str, OpenAIServer]]:
    """Yield (base_url ending in /v1, server) while the server runs in a thread."""
    server = OpenAIServer()
    port = free_port()
    uv = uvicorn.Server(
        uvicorn.Config(server.app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if time.monotonic() > deadline:
            raise TimeoutError("openai test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1", server
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
