"""A real local HTTP server for webhook tests: records every request, answers as the test tells it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

HANG = -1  # an answer that never comes


@dataclass(frozen=True)
class Received:
    """One request as the receiver read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers the n-th request (0-based) with `answer(n)`: a status code, (status, headers), or HANG."""

    answer: Callable[[int], int | tuple[int, dict[str, str]]]
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        """The receiver's webhook URL."""
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request, record it, answer it (or hang), close."""
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)  # type: ignore[arg-type]
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            n = len(self.requests)
            self.requests.append(Received(method, path, headers, body))
            self.arrived.set()
            answer = self.answer(n)
            status, extra = answer if isinstance(answer, tuple) else (answer, {})
            if status == HANG:
                await asyncio.sleep(3600)
            lines = [f"HTTP/1.1 {status} X", "Content-Length: 0", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in extra.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def wait_requests(self, count: int, timeout: float = 30.0) -> list[Received]:  # noqa: ASYNC109
        """Wait until `count` requests have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.requests


@contextlib.asynccontextmanager
async def receiving(answer: Callable[[int], int | tuple[int, dict[str, str]]]) -> AsyncIterator[Receiver]:
    """A receiver listening on a free local port while the block runs."""
    receiver = Receiver(answer)
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        for task in receiver.handlers:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)
