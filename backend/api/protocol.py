"""uvicorn's httptools HTTP/1.1 protocol with a bounded request head (request line + header fields).

uvicorn reads a request head for as long and as large as the client likes: httptools buffers an
unfinished header line without limit, and no timer runs until a request is complete. This subclass
counts the head's bytes before the parser sees them (over `max_bytes` → 431 and close, so the buffer
never outgrows the limit) and gives every head `timeout_s` from the connection's start, or from the
first byte of a keep-alive connection's next request (past it → 408 and close; an idle connection that
never sent a byte is just closed). httptools stays the parser: uvicorn's h11 protocol has a size limit
of its own but no head timeout, and is slower.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True)
class HeadLimits:
    """How large a request head may be and how long it may take to arrive."""

    max_bytes: int
    timeout_s: float


def _response(status: int, reason: str, message: str) -> bytes:
    body = message.encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


HEAD_TOO_LARGE = _response(431, "Request Header Fields Too Large", "Request header fields too large")
HEAD_TIMEOUT = _response(408, "Request Timeout", "Request headers not received in time")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """One connection: uvicorn's httptools protocol, refusing heads that are too large or too slow."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HeadLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        # True while the next bytes belong to a request head (at the start, and after each request's body).
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request head as soon as the connection opens."""
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the head timer with the connection."""
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count head bytes before parsing them: the parser never buffers more than the limit."""
        if self.transport.is_closing():
            return
        if self._in_head:
            end = data.find(HEAD_END)
            self._head_bytes += len(data) if end < 0 else end + len(HEAD_END)
            if self._head_bytes > self.limits.max_bytes:
                self._refuse(HEAD_TOO_LARGE)
                return
            self._arm_head_timer()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        """The head is in: stop counting and stop the clock."""
        self._in_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """Whatever the client sends next starts another request head."""
        super().on_message_complete()
        self._in_head = True

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            # A connection that never sent a byte gets no response: nothing asked for one.
            self._refuse(HEAD_TIMEOUT if self._head_bytes else b"")

    def _refuse(self, response: bytes) -> None:
        self._disarm_head_timer()
        if response:
            self.transport.write(response)
        self.transport.close()
