"""POSTing a webhook safely: resolve the host once, refuse private destinations, connect to the address
that was checked.

Checking a name and then letting the HTTP client resolve it again would let a DNS answer that changes
between the two (rebinding) reach an internal address. So the request goes to the checked IP itself,
with the original `Host` header and, for https, the original name as SNI and for certificate checks
(httpcore's `sni_hostname` extension). No proxies from the environment (they would resolve the name
themselves), no redirects (a 3xx is an answer like any other non-2xx), 5 s for the whole attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from backend.domain.webhooks import TIMEOUT_S, answered_2xx, refused_address


class DestinationRefused(Exception):
    """The webhook URL resolves to an address webhooks may not reach"""


@dataclass(frozen=True)
class PostOutcome:
    """What one POST came to: a status code, or an error (a short, secret-free description)."""

    status_code: int | None
    error: str | None
    refused: bool = False  # the destination may not be reached: nothing was sent

    @property
    def kind(self) -> Literal["delivered", "failed", "refused"]:
        """Delivered (a 2xx), refused (a forbidden destination), or failed (anything else)."""
        if self.refused:
            return "refused"
        return "delivered" if answered_2xx(self.status_code) else "failed"


async def resolve(host: str, port: int, allow_private: bool) -> str:
    """One address of `host` that may be reached; DestinationRefused if any address it has may not (a
    name that resolves to both a public and a private address is refused: the client could pick either)."""
    try:
        addresses = [str(ipaddress.ip_address(host))]  # an IP literal: no lookup (a thread hop each time)
    except ValueError:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise DestinationRefused("the host has no address")
    if not allow_private and any(refused_address(a) for a in addresses):
        raise DestinationRefused("the host resolves to a private, loopback, link-local or reserved address")
    return addresses[0]


def pinned_url(url: str, address: str) -> tuple[str, str, str]:
    """(the URL with its host replaced by `address`, the Host header, the original host name)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc_host = f"[{address}]" if ":" in address else address
    netloc = f"{netloc_host}:{parts.port}" if parts.port else netloc_host
    host_header = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc)), host_header, host


class WebhookPoster:
    """One HTTP client for a process's webhook attempts."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.client = httpx.AsyncClient(
            timeout=TIMEOUT_S, follow_redirects=False, trust_env=False, http2=False
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostOutcome:
        """POST `body` to `url` (resolved and checked now), within TIMEOUT_S in all."""
        try:
            async with asyncio.timeout(TIMEOUT_S):
                return await self._post(url, body, headers)
        except DestinationRefused as exc:
            return PostOutcome(None, f"refused: {exc}", refused=True)
        except TimeoutError:
            return PostOutcome(None, f"timeout after {TIMEOUT_S:g} s")
        except (httpx.HTTPError, OSError) as exc:
            return PostOutcome(None, f"{type(exc).__name__}: {str(exc)[:200]}")

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> PostOutcome:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            address = await resolve(parts.hostname or "", port, self.allow_private)
        except socket.gaierror as exc:
            return PostOutcome(None, f"DNS: {exc.strerror or exc}")
        target, host_header, host = pinned_url(url, address)
        request = self.client.build_request(
            "POST",
            target,
            content=body,
            headers={**headers, "Host": host_header, "Content-Type": "application/json"},
            extensions={"sni_hostname": host} if parts.scheme == "https" else {},
        )
        response = await self.client.send(request, stream=True)  # the answer's body is never read
        await response.aclose()
        return PostOutcome(response.status_code, None)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
