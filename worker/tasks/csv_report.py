"""`csv_report`: synthetic orders streamed to a CSV file in O(1) memory, deterministic per seed.

Each row takes three 16-bit random draws (date, customer, product and quantity). Every field comes
from a precomputed table indexed by a draw, so a chunk of rows is built by C-level `map`/`zip`/`join`
with no Python bytecode per row; no generated field needs CSV quoting. The loop runs in its own
thread, so the event loop keeps heartbeating while millions of rows are written.
"""

from __future__ import annotations

import random
import sys
import threading
from array import array
from datetime import date, timedelta
from itertools import chain

from backend.domain.payloads import CsvReportPayload
from worker.context import JobContext, Outcome, Progress
from worker.files import HashingWriter, publish, scratch_file
from worker.threads import Stopped, run_stoppable

CHUNK_ROWS = 10_000  # ~0.5 MB of text; one chunk is built without a GIL switch, so keep it short
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
MAX_QUANTITY = 20
FIRST_DATE = date(2024, 1, 1)
DAYS = 731
DRAW_SPAN = 1 << 16  # each draw is an unsigned 16-bit number; customers are C00000..C65535
DRAWS_PER_ROW = 3


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _product_cells(draw: int) -> str:
    """`,product,quantity,unit_price,total` and the line end: low 4 bits pick the product."""
    name, cents = PRODUCTS[draw % len(PRODUCTS)]
    qty = (draw >> 4) % MAX_QUANTITY + 1
    return f",{name},{qty},{_money(cents)},{_money(cents * qty)}\r\n"


def _date_cells(draw: int) -> str:
    """`,order_date,` and the customer prefix."""
    return f",{(FIRST_DATE + timedelta(days=draw % DAYS)).isoformat()},C"


# Lookup tables indexed by a draw; equal cells share one string object (about 5 MB in all).
DATE_CELLS: tuple[str, ...] = tuple(sys.intern(_date_cells(d)) for d in range(DRAW_SPAN))
CUSTOMER_CELLS: tuple[str, ...] = tuple(f"{d:05d}" for d in range(DRAW_SPAN))
PRODUCT_CELLS: tuple[str, ...] = tuple(sys.intern(_product_cells(d)) for d in range(DRAW_SPAN))


def _draws(rng: random.Random, count: int) -> array[int]:
    draws = array("H", rng.randbytes(2 * DRAWS_PER_ROW * count))
    if sys.byteorder == "big":
        draws.byteswap()  # the bytes are read little-endian everywhere: same seed, same file
    return draws


def format_chunk(rng: random.Random, first_id: int, count: int) -> str:
    """`count` rows starting at order id `first_id`."""
    draws = _draws(rng, count)
    cells = zip(
        map(str, range(first_id, first_id + count)),
        map(DATE_CELLS.__getitem__, draws[0::DRAWS_PER_ROW]),
        map(CUSTOMER_CELLS.__getitem__, draws[1::DRAWS_PER_ROW]),
        map(PRODUCT_CELLS.__getitem__, draws[2::DRAWS_PER_ROW]),
        strict=True,
    )
    return "".join(chain.from_iterable(cells))


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
    async with scratch_file(ctx, filename) as writer:
        await run_stoppable(
            lambda stop: write_report(writer, payload.rows, payload.seed, ctx.progress, stop),
            name=f"csv_report-{ctx.job_id}",
        )
    info = await publish(ctx, writer, filename, CONTENT_TYPE)
    return Outcome(result={"rows": payload.rows, "seed": payload.seed}, file=info)
