"""
The load generator of ``bench/load.py``: signed callbacks over raw HTTP/1.1.

It runs in a child process of its own (``run_load``), so that building
requests and reading answers does not compete with the caller's Python
work. One asyncio loop keeps a fixed number of requests in flight; each
request is a body for the built-in ``hmac`` gateway, signed right before it
is sent (the gateway refuses signatures older than 300 s), and carries
``X-Forwarded-Proto: https`` as a TLS-terminating proxy would. Connections
are kept open when the server offers it (gunicorn's sync workers close them
after every answer). Only the standard library and orderflow's own signing
function are used.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any

from benchdb import BenchError

REQUEST_TIMEOUT = 60
"""Seconds a request may take before it counts as failed."""
FOLLOWER_GAP = 2
"""A follower is sent about this many rounds of ``concurrency`` items after its item."""


@dataclass
class Send:
    """One HTTP request: a signed body for one server."""

    server: int
    body: bytes


@dataclass
class Item:
    """
    Requests sent together (two for a concurrent pair), then their followers.

    ``expect`` is the multiset of answers (``status`` of the JSON) the sends
    must get; ``then`` is sent once every send of this item was answered.
    """

    label: str
    sends: list[Send]
    expect: tuple[str, ...]
    then: list[Item] = field(default_factory=list)


@dataclass
class Answer:
    """What one request got: ``http`` is 0 when the connection failed."""

    label: str
    server: int
    http: int
    status: str
    seconds: float


@dataclass
class LoadResult:
    """Every item with its answers; the timed part's wall-clock and the generator's CPU time."""

    warmup: list[tuple[Item, list[Answer]]]
    timed: list[tuple[Item, list[Answer]]]
    seconds: float
    cpu_seconds: float


class Server:
    """One server's idle keep-alive connections."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes, signature: str) -> tuple[int, bytes]:
        """POST a body; return the HTTP status and the response body."""
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            "Content-Type: application/json\r\nX-Forwarded-Proto: https\r\n"
            f"X-Orderflow-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        # A request is never retried: a second delivery would change the answers
        # the check expects. A keep-alive connection the server closed counts as
        # a failure (gunicorn's sync workers close after every answer anyway).
        reader, writer = self.idle.pop() if self.idle else await self.connect()
        try:
            writer.write(request)
            await writer.drain()
            status, headers, content = await read_response(reader)
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close" or reader.at_eof():
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, content

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def get(self) -> int:
        """GET / on a fresh connection; return the HTTP status (readiness probe)."""
        reader, writer = await self.connect()
        try:
            writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())
            await writer.drain()
            status, _headers, _content = await read_response(reader)
            return status
        finally:
            writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response: status, lower-cased headers, body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    version, status = head[0].split(" ", 2)[:2]
    headers = {}
    for line in head[1:]:
        name, _sep, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if version != "HTTP/1.1":
        headers["connection"] = "close"
    if "content-length" in headers:
        content = await reader.readexactly(int(headers["content-length"]))
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        content = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            content += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    else:
        content = await reader.read()
        headers["connection"] = "close"
    return int(status), headers, content


async def deliver(
    server: Server, path: str, send: Send, label: str, secret: str, slots: asyncio.Semaphore
) -> Answer:
    """
    Sign a body now and post it; a failed exchange is an answer with HTTP 0.

    The latency runs from sending (connecting included) to the last byte of the answer.
    """
    from payments.gateways.hmac import sign

    async with slots:
        started = time.perf_counter()
        try:
            http, content = await asyncio.wait_for(
                server.post(path, send.body, sign(send.body, secret)), REQUEST_TIMEOUT
            )
        except Exception as exc:  # refused, reset, timed out, unreadable: all counted
            return Answer(label, send.server, 0, type(exc).__name__, time.perf_counter() - started)
        seconds = time.perf_counter() - started
    try:
        status = json.loads(content).get("status") or "error"
    except ValueError:
        status = "unreadable"
    return Answer(label, send.server, http, status, seconds)


async def run_items(
    items: list[Item], servers: list[Server], path: str, secret: str, concurrency: int
) -> list[tuple[Item, list[Answer]]]:
    """
    Send every item and its followers with at most ``concurrency`` requests in flight.

    A follower waits for its item's answers, then joins the line
    ``FOLLOWER_GAP`` items before the end: delivered a little later, mixed
    into the rest of the load rather than all at the end.
    """
    line = deque(items)
    busy = 0
    changed = asyncio.Event()
    slots = asyncio.Semaphore(concurrency)
    done: list[tuple[Item, list[Answer]]] = []
    gap = FOLLOWER_GAP * concurrency

    async def worker() -> None:
        nonlocal busy
        while line or busy:
            if not line:
                # Another worker's item may still bring followers.
                changed.clear()
                await changed.wait()
                continue
            item = line.popleft()
            busy += 1
            try:
                answers = await asyncio.gather(
                    *(
                        deliver(servers[s.server], path, s, item.label, secret, slots)
                        for s in item.sends
                    )
                )
                done.append((item, list(answers)))
                for follower in item.then:
                    line.insert(min(len(line), gap), follower)
            finally:
                busy -= 1
                changed.set()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def generate_load(
    warmup_items: list[Item],
    items: list[Item],
    ports: list[int],
    path: str,
    secret: str,
    concurrency: int,
) -> LoadResult:
    """Child process: send the warm-up items, then the timed ones; return every answer."""

    async def main() -> LoadResult:
        servers = [Server(port) for port in ports]
        warmup = await run_items(warmup_items, servers, path, secret, concurrency)
        started, cpu = time.perf_counter(), time.process_time()
        timed = await run_items(items, servers, path, secret, concurrency)
        seconds = time.perf_counter() - started
        return LoadResult(warmup, timed, seconds, time.process_time() - cpu)

    return asyncio.run(main())


def _generator_process(pipe: Connection, *args: Any) -> None:
    """Child process: send the LoadResult, or a BenchError saying why there is none."""
    try:
        pipe.send(generate_load(*args))
    except BaseException:
        pipe.send(BenchError(f"the load generator failed:\n{traceback.format_exc()}"))
    finally:
        pipe.close()


def run_load(
    warmup_items: list[Item],
    items: list[Item],
    ports: list[int],
    *,
    path: str,
    secret: str,
    concurrency: int,
) -> LoadResult:
    """
    Run ``generate_load`` in a child process, away from the caller's work.

    The child is stopped if the caller is interrupted while waiting for it.
    Raise BenchError if the generator fails.
    """
    context = get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    args = (sender, warmup_items, items, ports, path, secret, concurrency)
    process = context.Process(target=_generator_process, args=args)
    process.start()
    sender.close()
    outcome: Any = None
    try:
        outcome = receiver.recv()
    except EOFError:
        raise BenchError("the load generator died without an answer") from None
    finally:
        # Once it answered, the child only has to exit; otherwise it is stopped.
        process.join(timeout=10 if outcome is not None else 0)
        if process.is_alive():
            process.terminate()
            process.join()
        receiver.close()
    if isinstance(outcome, BenchError):
        raise outcome
    return outcome
