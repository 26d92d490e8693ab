"""`csv_report`: synthetic orders streamed to a CSV file in O(1) memory, deterministic per seed.

Rows are produced a chunk at a time from one 64-bit random draw each and formatted straight into
text (every field is generated, so none needs CSV quoting); the loop runs in a worker thread, so
the event loop keeps heartbeating while millions of rows are written.
"""

from __future__ import annotations

import random
import threading
from array import array
from datetime import date, timedelta

from backend.domain.payloads import CsvReportPayload
from worker.context import JobContext, Outcome, Progress
from worker.files import HashingWriter, publish, scratch_writer
from worker.threads import Stopped, run_stoppable

TIMEOUT_S = 3600
CHUNK_ROWS = 50_000
HEADER = "order_id,order_date,customer,product,quantity,unit_price,total\r\n"
CONTENT_TYPE = "text/csv; charset=utf-8"

PRODUCTS: tuple[tuple[str, int], ...] = (
    ("Widget", 499),
    ("Gadget", 1299),
    ("Sprocket", 250),
    ("Gizmo", 2999),
    ("Doohickey", 799),
    ("Thingamajig", 1550),
    ("Whatsit", 120),
    ("Contraption", 8999),
    ("Apparatus", 4525),
    ("Device", 3300),
    ("Module", 1999),
    ("Adapter", 899),
    ("Bracket", 175),
    ("Flange", 640),
    ("Valve", 2210),
    ("Gasket", 95),
)
DATES = tuple((date(2024, 1, 1) + timedelta(days=d)).isoformat() for d in range(731))
PRICES = tuple(f"{cents // 100}.{cents % 100:02d}" for _, cents in PRODUCTS)


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def format_chunk(rng: random.Random, first_id: int, count: int) -> str:
    """`count` rows starting at order id `first_id`, one random draw per row."""
    draws = array("Q", rng.randbytes(8 * count))
    n_products, n_dates = len(PRODUCTS), len(DATES)
    lines: list[str] = []
    append = lines.append
    for offset, r in enumerate(draws):
        p = r % n_products
        qty = (r >> 8) % 20 + 1
        name, cents = PRODUCTS[p]
        append(
            f"{first_id + offset},{DATES[(r >> 16) % n_dates]},C{(r >> 32) % 100000:05d},{name},{qty},"
            f"{PRICES[p]},{_money(cents * qty)}\r\n"
        )
    return "".join(lines)


def write_report(
    writer: HashingWriter, rows: int, seed: int, progress: Progress, stop: threading.Event
) -> None:
    """Write the header and `rows` rows in chunks (blocking; runs in a thread)."""
    rng = random.Random(seed)
    writer.write(HEADER.encode())
    done = 0
    while done < rows:
        if stop.is_set():
            raise Stopped()
        count = min(CHUNK_ROWS, rows - done)
        writer.write(format_chunk(rng, done + 1, count).encode())
        done += count
        progress.report(done / rows)


async def handle(ctx: JobContext, payload: CsvReportPayload) -> Outcome:
    """Generate the report into a scratch file, then publish it atomically."""
    filename = f"report-{ctx.job_id}.csv"
    with scratch_writer(ctx.storage, ctx, filename) as writer:
        await run_stoppable(lambda stop: write_report(writer, payload.rows, payload.seed, ctx.progress, stop))
    info = await publish(ctx, writer, filename, CONTENT_TYPE)
    return Outcome(result={"rows": payload.rows, "seed": payload.seed}, file=info)
