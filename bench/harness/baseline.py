"""The baseline: the same fake provider streamed straight to an SSE client, no Kafka;
and the OpenAI-compatible upstream of ``--provider openai``.

One child process, one raw asyncio server (uvloop when installed, as uvicorn uses):

* ``GET /stream/{id}?n=N&r=R`` runs ``FakeProvider.stream`` for a ``JobCommand`` of
  ``max_tokens=N`` and ``provider_options={"tokens_per_s": R}`` whose prompt is the
  one tokenrelay's job got (``{name}-{i}`` → ``"{name} {i}"``), so the tokens and the
  pacing are the same; each token goes out at once as an SSE ``token`` event (chunked,
  like the gateway's) whose data carries ``ts`` = now at emit and ``index``. ``n=0`` is
  an idle stream: one ``queued`` event, then nothing until the client hangs up.
* ``POST /v1/jobs`` validates the body as a ``JobRequest`` and answers 202 with a job
  id: what accepting a job costs without a log behind it; ``POST /v1/batches`` the same
  for each job of ``{"jobs": [...]}``.
* ``POST /v1/chat/completions`` (``stream: true``) is the upstream of ``--provider
  openai``: OpenAI's streaming wire format (a role chunk, one ``chat.completion.chunk``
  per token, ``finish_reason``, a usage chunk when ``stream_options.include_usage``,
  ``data: [DONE]``) with the fake provider's tokens for the messages it got, paced at
  the body's ``tokens_per_s`` (the job's ``provider_options``, sent as extra body). The
  worker's ``openai`` provider talks to it through the real SDK, and the baseline
  streams the same tokens at the same pace from this same process.

What tokenrelay adds over this — ingest, the broker, the worker's produce, the
gateway's consume and fan-out — is what the ratios in the report measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from multiprocessing.connection import Connection
from urllib.parse import parse_qs, urlsplit

import orjson

from bench.processes import serve_commands, use_uvloop
from schemas.commands import JobCommand
from schemas.jobs import JobRequest
from services.core.ids import new_job_id, now_us
from services.worker.providers.fake import (
    DEFAULT_MAX_TOKENS,
    FakeProvider,
    count_prompt_tokens,
    fake_tokens,
)

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse(kind: str, fields: dict[str, object]) -> bytes:
    return chunk(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(fields) + b"\n\n")


def command(job_id: str, tokens: int, tokens_per_s: float) -> JobCommand:
    """The command tokenrelay's worker would run for the job ``job_id`` names."""
    name, _, i = job_id.rpartition("-")
    request = JobRequest(
        prompt=f"{name} {i}",
        provider="fake",
        max_tokens=tokens,
        provider_options={"tokens_per_s": tokens_per_s},
    )
    return JobCommand(
        job_id=job_id,
        tenant="bench",
        submitted_at=now_us(),
        provider="fake",
        model="fake-1",
        request=request,
    )


async def stream(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, target: str) -> None:
    url = urlsplit(target)
    job_id = url.path.rsplit("/", 1)[1]
    query = parse_qs(url.query)
    tokens, tokens_per_s = int(query["n"][0]), float(query["r"][0])
    writer.write(SSE_HEAD)
    base = {"job_id": job_id, "attempt": 1, "worker_id": "baseline", "tenant": "bench"}
    if tokens == 0:
        writer.write(sse("queued", {**base, "type": "queued", "seq": 0, "ts": now_us()}))
        await reader.read()  # idle until the client hangs up
        return
    index = 0
    async for piece in FakeProvider(tokens_per_s).stream(command(job_id, tokens, tokens_per_s)):
        if piece.text is None:
            continue
        index += 1
        fields = {**base, "type": "token", "seq": index, "ts": now_us(), "text": piece.text}
        writer.write(sse("token", {**fields, "index": index}))
        await writer.drain()
    writer.write(sse("completed", {**base, "type": "completed", "seq": index + 1, "ts": now_us()}))
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def completion_chunk(
    delta: dict[str, str], finish: str | None = None, usage: dict[str, int] | None = None
) -> bytes:
    """One ``data:`` line of OpenAI's stream, chunked for the wire."""
    fields: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "bench",
        "system_fingerprint": None,
        "choices": []
        if usage
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        fields["usage"] = usage
    return chunk(b"data: " + orjson.dumps(fields) + b"\n\n")


async def complete(writer: asyncio.StreamWriter, body: bytes) -> None:
    """``POST /v1/chat/completions``: the fake provider's tokens in OpenAI's wire format."""
    request = orjson.loads(body)
    if not request.get("stream"):
        answer = b'{"error": {"message": "stream only", "type": "invalid_request_error"}}'
        writer.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(answer), answer)
        )
        return
    prompt = "\n".join(f"{m['role']}: {m['content']}" for m in request["messages"])
    tokens = fake_tokens(prompt, request.get("max_tokens") or DEFAULT_MAX_TOKENS)
    rate = float(request.get("tokens_per_s") or 0)
    writer.write(SSE_HEAD)
    writer.write(completion_chunk({"role": "assistant", "content": ""}))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i, text in enumerate(tokens):
        if rate > 0:
            await asyncio.sleep(max(0.0, t0 + (i + 1) / rate - loop.time()))
        writer.write(completion_chunk({"content": text}))
        await writer.drain()
    finish = "length" if request.get("max_tokens") else "stop"
    writer.write(completion_chunk({}, finish))
    if (request.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": count_prompt_tokens(prompt), "completion_tokens": len(tokens)}
        writer.write(completion_chunk({}, usage={**usage, "total_tokens": sum(usage.values())}))
    writer.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()


async def accept(writer: asyncio.StreamWriter, target: bytes, body: bytes) -> None:
    """``POST /v1/jobs`` or ``POST /v1/batches`` (``{"jobs": [...]}``): each job validated."""
    try:
        if target.startswith(b"/v1/batches"):
            jobs = [JobRequest.model_validate(job) for job in orjson.loads(body)["jobs"]]
            ids = [new_job_id() for _ in jobs]
            answer = orjson.dumps({"batch_id": new_job_id(), "job_ids": ids})
        else:
            JobRequest.model_validate_json(body)
            answer = orjson.dumps({"job_id": new_job_id(), "status": "queued"})
        status = b"202"
    except (ValueError, KeyError, TypeError):
        answer, status = b'{"error": {"code": "invalid_request"}}', b"422"
    writer.write(
        b"HTTP/1.1 %s Accepted\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (status, len(answer), answer)
    )
    await writer.drain()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One connection: keep-alive POSTs, or one GET stream that ends the connection."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b" ", 2)
            if method == b"GET":
                await stream(writer, reader, target.decode())
                return
            length = 0
            for line in head.lower().split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line[15:])
            body = await reader.readexactly(length)
            if target.startswith(b"/v1/chat/completions"):
                await complete(writer, body)
            else:
                await accept(writer, target, body)
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


def run(conn: Connection, port: int) -> None:
    """The process: serve on ``port`` until the parent sends ``close``."""
    use_uvloop()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)

        async def close() -> None:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)

        async def ready() -> int:
            return port

        await serve_commands(conn, {"ready": ready, "close": close})

    asyncio.run(main())
