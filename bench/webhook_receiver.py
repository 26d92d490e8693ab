"""A webhook receiver for scenario 10: `python -m bench.webhook_receiver PORT`, a separate process.

Minimal on purpose (raw asyncio protocol on uvloop, no HTTP framework), so that it is never what limits a
delivery rate: it answers every POST with 204 at once and keeps, per request, the arrival time, the three
Standard Webhooks headers and the body. The bench reads them back off the clock:

- `GET /_count`: how many POSTs arrived since the last reset (plain text)
- `GET /_records`: every one of them, as JSON (`at` is the arrival's wall-clock time)
- `POST /_reset`: forget them
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import cast

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")

# (arrival time, webhook-id, webhook-timestamp, webhook-signature, body); a missing header is None.
Record = tuple[float, str | None, str | None, str | None, bytes]


class Store:
    def __init__(self) -> None:
        self.records: list[Record] = []


def _ok(data: bytes, content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


class Receiver(asyncio.Protocol):
    """One keep-alive connection: requests parsed from the buffer as they complete (pipelining works)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass, but is one

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path = lines[0].split(" ", 2)[:2]
            assert self.transport is not None
            self.transport.write(self.answer(method, path, headers, body))

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        if path == "/_count":
            return _ok(str(len(self.store.records)).encode(), "text/plain")
        if path == "/_records":
            rows = [
                {"at": at, "id": i, "timestamp": ts, "signature": sig, "body": b.decode()}
                for at, i, ts, sig, b in self.store.records
            ]
            return _ok(json.dumps(rows).encode())
        if path == "/_reset":
            self.store.records = []
            return _ok(b"", "text/plain")
        if method == "POST":
            msg_id, timestamp, signature = (headers.get(h) for h in HEADERS)
            self.store.records.append((time.time(), msg_id, timestamp, signature, body))
        return NO_CONTENT


async def serve(port: int) -> None:
    store = Store()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Receiver(store), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    import uvloop

    uvloop.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
