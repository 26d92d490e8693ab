"""A lean HTTP/1.1 keep-alive client: the load generator must cost far less than the server it measures.

General clients (httpx) spend more CPU per request than a FastAPI route does, which on a 2-core machine
would make the client the bottleneck. This one sends pre-built requests and parses only the status
line and the body length.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

HOST = "127.0.0.1"
READ_LIMIT = 1 << 20


def build_request(
    method: str, path: str, headers: dict[str, str] | None = None, body: Any = None, host: str = HOST
) -> bytes:
    """The bytes of one request (a JSON body when `body` is given)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    data = b""
    if body is not None:
        data = json.dumps(body).encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


class Connection:
    """One keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request and read the whole response."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port, limit=READ_LIMIT)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if status in (204, 304):  # no body, whatever the headers say
            body = b""
        elif at >= 0:
            body = await self.reader.readexactly(int(lower[at + 17 : lower.index(b"\r\n", at + 2)]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            body = await self._chunked()
        else:
            body = await self.reader.read()
        if b"\r\nconnection: close" in lower:
            await self.close()
        return status, body

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return b"".join(parts)[:-2]

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def get_status(host: str, port: int, path: str) -> int | None:
    """The status of one GET, or None if nothing answers yet."""
    conn = Connection(port)
    try:
        return (await conn.request(build_request("GET", path)))[0]
    except OSError:
        return None
    finally:
        await conn.close()


@dataclass
class LoadResult:
    """What a load run saw."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed: float = 0.0
    cpu: str = ""  # filled in by whoever measured CPU during the run

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    def require(self, *ok: int) -> None:
        """Fail loudly if any response had another status (a benchmark of errors measures nothing)."""
        bad = {s: n for s, n in self.statuses.items() if s not in ok}
        if bad:
            raise RuntimeError(f"unexpected HTTP statuses {bad} (wanted {ok})")


OnResponse = Callable[[int, int, bytes, float], None]


async def run_load(
    port: int,
    concurrency: int,
    make: Callable[[int], bytes],
    *,
    count: int | None = None,
    duration: float | None = None,
    on_response: OnResponse | None = None,
) -> LoadResult:
    """`concurrency` connections sending `make(i)` until `count` requests or `duration` seconds."""
    result = LoadResult()
    next_index = 0
    start = time.perf_counter()
    deadline = start + duration if duration is not None else None

    async def client() -> None:
        nonlocal next_index
        conn = Connection(port)
        try:
            while True:
                i = next_index
                if (count is not None and i >= count) or (deadline and time.perf_counter() >= deadline):
                    return
                next_index += 1
                sent = time.perf_counter()
                status, body = await conn.request(make(i))
                result.latencies.append(time.perf_counter() - sent)
                result.statuses[status] += 1
                if on_response is not None:
                    on_response(i, status, body, time.time())
        finally:
            await conn.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - start
    return result


def download(
    port: int, path: str, headers: dict[str, str], *, follow: bool = False
) -> tuple[int, int, float]:
    """GET a large body over a blocking socket, discarding it: (status, bytes, seconds). With `follow`, a
    redirect to a loopback URL (a presigned URL on the store) is followed, without `headers`, on the clock."""
    start = time.perf_counter()
    status, received, location = _get(port, path, headers, HOST)
    if follow and location is not None and status in (301, 302, 303, 307, 308):
        url = urlsplit(location)
        if url.hostname != HOST or url.port is None:
            raise ValueError(f"redirected off loopback: {location}")
        status, received, _ = _get(url.port, f"{url.path}?{url.query}", {}, url.netloc)
    return status, received, time.perf_counter() - start


def _get(port: int, path: str, headers: dict[str, str], host: str) -> tuple[int, int, str | None]:
    """One GET on a fresh connection: (status, body bytes received, Location if any)."""
    buf = bytearray(READ_LIMIT)
    view = memoryview(buf)
    with socket.create_connection((HOST, port)) as sock:
        sock.sendall(build_request("GET", path, headers, host=host))
        got = sock.recv_into(view)
        head_end = bytes(buf[:got]).find(b"\r\n\r\n")
        while head_end < 0:
            got += sock.recv_into(view[got:])
            head_end = bytes(buf[:got]).find(b"\r\n\r\n")
        raw = bytes(buf[:head_end])
        head = raw.lower()
        status = int(head[9:12])
        at = head.find(b"\r\ncontent-length:")
        length = int(head[at + 17 :].split(b"\r\n")[0])
        at = head.find(b"\r\nlocation:")
        location = raw[at + 11 :].split(b"\r\n")[0].strip().decode() if at >= 0 else None  # case kept
        received = got - head_end - 4
        while received < length:
            n = sock.recv_into(view)
            if n == 0:
                break
            received += n
    return status, received, location
