"""Scenario 10's baseline: plain httpx POSTs from one process, as many in flight as the webhook sender.

`python -m bench.baselines.webhook_poster URL N CONCURRENCY REQUEST_JSON` POSTs the same body with the
same headers N times from CONCURRENCY coroutines, each sending its next request as soon as the last one
is answered. The client is configured like `backend/adapters/webhook_http.py`'s (5 s timeout, no
redirects, no proxies from the environment, HTTP/1.1) and sends as it does (`send(stream=True)`, then
`aclose()` without reading the body: `client.post` measured about half as fast here, which would flatter
the ratio), on the stock asyncio loop, as the arq worker does. No signing, no address check, no database:
what is left is the cost of the HTTP client and the receiver.
Prints `{"sent", "errors", "seconds", "cpu_seconds"}` as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import httpx


async def post_all(
    url: str, n: int, concurrency: int, body: bytes, headers: dict[str, str]
) -> dict[str, float]:
    left, errors = n, 0
    async with httpx.AsyncClient(timeout=5.0, follow_redirects=False, trust_env=False, http2=False) as client:

        async def one_slot() -> None:
            nonlocal left, errors
            while left > 0:
                left -= 1
                request = client.build_request("POST", url, content=body, headers=headers)
                response = await client.send(request, stream=True)  # as the sender: the body is not read
                await response.aclose()
                if not 200 <= response.status_code < 300:
                    errors += 1

        start, cpu_start = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one_slot() for _ in range(concurrency)))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        return {"sent": n, "errors": errors, "seconds": seconds, "cpu_seconds": cpu}


def main() -> None:
    url, n, concurrency, request_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    request = json.loads(Path(request_file).read_text())
    headers = {**request["headers"], "Content-Type": "application/json"}
    print(json.dumps(asyncio.run(post_all(url, n, concurrency, request["body"].encode(), headers))))


if __name__ == "__main__":
    main()
