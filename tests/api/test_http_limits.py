"""A real `jobplatform api` bounds request heads in size and time, and connections in number.

Raw sockets, because an HTTP client would never send what these tests send: unfinished, oversized or
dribbled request heads.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import psutil
import pytest

from tests.utils.stack import Stack, serve_api

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 20
MiB = 1024 * 1024


@dataclass(frozen=True)
class Api:
    """A running API process."""

    port: int
    process: psutil.Process

    def rss(self) -> int:
        return int(self.process.memory_info().rss)


def _api_process(port: int) -> psutil.Process:
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(c.laddr.port == port for c in child.net_connections("tcp") if c.status == "LISTEN"):
                return child
    raise AssertionError(f"no child process listens on port {port}")


@pytest.fixture(scope="module")
async def api(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    settings = stack.settings.model_copy(
        update={
            "http_max_header_bytes": MAX_HEAD,
            "http_header_timeout_seconds": HEAD_TIMEOUT_S,
            "http_max_connections": MAX_CONNECTIONS,
        }
    )
    async with serve_api(settings, tmp_path_factory.mktemp("api") / "api.log") as base:
        port = int(base.rsplit(":", 1)[1])
        yield Api(port, _api_process(port))


def connect(api: Api) -> socket.socket:
    return socket.create_connection(("127.0.0.1", api.port), timeout=10)


def reply(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (b"" when it reset the connection instead)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def one_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def send_all(sock: socket.socket, data: bytes, chunk: int = 64 * 1024) -> int:
    """Send `data` until done or the server hangs up; returns the bytes sent."""
    sent = 0
    with contextlib.suppress(OSError):
        for at in range(0, len(data), chunk):
            sock.sendall(data[at : at + chunk])
            sent = at + chunk
    return min(sent, len(data))


def health(api: Api, extra: bytes = b"") -> bytes:
    with connect(api) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + extra + b"\r\n")
        return reply(sock)


def refused_or_431(response: bytes) -> bool:
    return response == b"" or response.startswith(b"HTTP/1.1 431 ")


async def test_a_head_within_the_limit_is_served(api: Api) -> None:
    near_limit = b"X-Pad: " + b"a" * (MAX_HEAD - 200) + b"\r\n"
    response = await asyncio.to_thread(health, api, near_limit)
    assert response.startswith(b"HTTP/1.1 200 "), response[:200]


async def test_a_complete_oversized_head_is_refused(api: Api) -> None:
    response = await asyncio.to_thread(health, api, b"X-Big: " + b"a" * (MAX_HEAD + 1) + b"\r\n")
    assert refused_or_431(response), response[:200]

    def send_64_mib() -> tuple[int, bytes]:
        head = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (64 * MiB) + b"\r\n\r\n"
        with connect(api) as sock:
            return send_all(sock, head), reply(sock)

    sent, response = await asyncio.to_thread(send_64_mib)
    assert refused_or_431(response), response[:200]
    assert sent < 64 * MiB  # the server hung up long before the end


async def test_unfinished_32_mib_heads_do_not_grow_memory(api: Api) -> None:
    before = api.rss()
    peak = before
    sockets = [connect(api) for _ in range(4)]
    try:
        head = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (32 * MiB)  # never finished
        sends = asyncio.gather(*(asyncio.to_thread(send_all, s, head) for s in sockets))
        while not sends.done():
            peak = max(peak, api.rss())
            await asyncio.sleep(0.02)
        sent = await sends
        peak = max(peak, api.rss())
    finally:
        for s in sockets:
            s.close()
    print(f"\n4 x 32 MiB unfinished heads: API RSS {before / MiB:.0f} -> peak {peak / MiB:.0f} MiB")
    assert peak - before < 16 * MiB, f"RSS grew from {before // MiB} to {peak // MiB} MiB (sent {sent})"
    assert all(n < 32 * MiB for n in sent), sent


async def _closed_within(sockets: list[socket.socket], seconds: float) -> list[bytes]:
    """What each socket received before the server closed it; fails if one is still open after `seconds`."""
    for s in sockets:
        s.settimeout(seconds)
    try:
        return await asyncio.gather(*(asyncio.to_thread(reply, s) for s in sockets))
    except TimeoutError as exc:
        raise AssertionError(f"a connection was still open after {seconds} s") from exc


async def test_half_sent_heads_are_closed_after_the_timeout(api: Api) -> None:
    sockets = [connect(api) for _ in range(100)]
    try:
        for s in sockets:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")  # the blank line never comes
        started = time.monotonic()
        replies = await _closed_within(sockets, HEAD_TIMEOUT_S + 5)
        elapsed = time.monotonic() - started
    finally:
        for s in sockets:
            s.close()
    assert all(r.startswith(b"HTTP/1.1 408 ") for r in replies), {r[:40] for r in replies}
    assert elapsed < HEAD_TIMEOUT_S + 2, elapsed


async def test_a_dribbled_head_and_an_idle_connection_are_closed(api: Api) -> None:
    idle, dribbler = connect(api), connect(api)
    try:

        def dribble() -> None:
            with contextlib.suppress(OSError):
                for byte in b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100:
                    dribbler.sendall(bytes([byte]))
                    time.sleep(0.1)

        sender = asyncio.create_task(asyncio.to_thread(dribble))
        replies = await _closed_within([idle, dribbler], HEAD_TIMEOUT_S + 5)
        await sender
    finally:
        idle.close()
        dribbler.close()
    assert replies[0] == b""  # nothing was asked, so nothing is answered
    assert replies[1].startswith(b"HTTP/1.1 408 ")


async def test_the_timeout_bounds_heads_not_bodies_or_keep_alive(api: Api) -> None:
    def slow_body_then_keep_alive() -> list[bytes]:
        body = b'{"type": "sleep", "payload": {"seconds": 0}}'
        with connect(api) as sock:
            head = f"POST /jobs HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            sock.sendall(head)
            time.sleep(HEAD_TIMEOUT_S + 0.5)  # the head is in: the body may take its time
            sock.sendall(body)
            first = one_response(sock)
            time.sleep(HEAD_TIMEOUT_S / 2)  # a keep-alive gap longer than nothing, shorter than 5 s
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return [first, reply(sock)]

    first, second = await asyncio.to_thread(slow_body_then_keep_alive)
    assert first.startswith(b"HTTP/1.1 401 "), first[:200]  # read and answered (no key given)
    assert second.startswith(b"HTTP/1.1 200 "), second[:200]


async def test_connections_beyond_the_limit_get_503(api: Api) -> None:
    async def status_with_open(n: int) -> bytes:
        held = [connect(api) for _ in range(n)]
        try:
            for s in held:
                s.sendall(b"GET /health HTTP/1.1\r\n")  # open, head unfinished
            await asyncio.sleep(0.2)
            return (await asyncio.to_thread(health, api))[:12]
        finally:
            for s in held:
                s.close()

    assert await status_with_open(MAX_CONNECTIONS - 1) == b"HTTP/1.1 200"
    await asyncio.sleep(0.3)  # let the server see those connections go
    assert await status_with_open(MAX_CONNECTIONS) == b"HTTP/1.1 503"
    await asyncio.sleep(0.3)
    assert (await asyncio.to_thread(health, api)).startswith(b"HTTP/1.1 200 ")
