"""
``set_payment_status`` on many orders against one SQL statement doing the same writes.

Run from the project folder, on PostgreSQL only::

    DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/orderflow_bench \\
        .venv/bin/python bench/bulk_status.py [--sizes 100000,300000] [--rounds 3]

The database named in DATABASE_URL is dropped and created again, migrated,
filled and dropped at the end (``--keep`` keeps it); its name must contain
"bench" so that a real database is never dropped.

**Data.** For every round of every size, two fresh sets of that many orders
are generated with SQL (``generate_series``), identical but for their
numbers and their payment method (one offline method per set, so that each
side selects its own set only): all *Awaiting payment*, placed over the
past eight weeks, then ``VACUUM ANALYZE``. Earlier rounds' orders stay in
the table, so both sides of a round see the same table.

**Command.** ``set_payment_status --to cancelled --reason ... --status
awaiting_payment --method <the set's method> --older-than 1d`` (default
batch size), run in a child process started for the purpose. The child
sets Django up, turns ``DEBUG`` off (as in production; with it on Django
keeps the SQL of recent statements), then times ``call_command`` alone:
Python's start and Django's setup are not counted. Its peak memory is the
child's ``ru_maxrss`` (peak resident set, from ``os.wait4``), Django's own
footprint included; an empty run (a method with no orders) gives that
footprint, so the growth with the number of orders is the difference.

**Floor.** The same rows of the other set cancelled by one statement
through raw psycopg, in one transaction: ``WITH changed AS (UPDATE
orders_order ... RETURNING ...) INSERT INTO orders_historicalorder ...
SELECT ... FROM changed``: the status and ``updated_at`` written, and one
history record per order with every column a history record carries
(reason, channel ``command``, type ``~``, no user). It leaves out the
command's row locks, its per-batch transactions, the rule checks and the
stored attention refresh. It is a floor, not an alternative
implementation.

After each side the script checks that every order of the set is cancelled
with one history record for it. Rounds alternate which side goes first. The
output gives every run, the median of each side, the ratio command/floor of
the medians and the median of the rounds' ratios (the goal: at most 5),
and the peak memory at each size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from benchdb import PROJECT, BenchError, configure_django, run_on_bench_database, server_params

REASON = "bench: unpaid for a week"
# Placed between 2 days and about 8 weeks ago: all older than --older-than 1d.
PLACED = "now() - interval '2 days' - ((i * 7919) %% 4838400) * interval '1 second'"
HISTORY_COLUMNS = (
    "id, number, status, total, currency, payment_method_id, customer_email, "
    "gateway_reference, captured_amount, refunded_amount, disputed_amount, dispute_status, "
    "placed_at, updated_at"
)


# -- data -------------------------------------------------------------------------------


def new_set(conn: psycopg.Connection, code: str, size: int) -> int:
    """Create the offline method ``code`` and ``size`` awaiting orders of it; return its id."""
    from payments.models import PaymentMethod, PaymentMethodKind

    method_id = PaymentMethod.objects.create(
        code=code, name=code, kind=PaymentMethodKind.OFFLINE, gateway=""
    ).pk
    start = conn.execute("SELECT coalesce(max(id), 0) FROM orders_order").fetchone()[0] + 1
    conn.execute(
        f"""
        INSERT INTO orders_order (id, number, status, total, currency, payment_method_id,
            customer_email, gateway_reference, captured_amount, refunded_amount,
            disputed_amount, dispute_status, placed_at, updated_at, attention_code)
        SELECT i, %(prefix)s || lpad(i::text, 9, '0'), 'awaiting_payment',
            20.99 + (i * 37) %% 480, 'USD', %(method)s,
            'customer' || (i / 4) || '@example.com', '', 0, 0, 0, '', {PLACED}, {PLACED}, ''
        FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS i
        """,
        {
            "prefix": code.upper() + "-",
            "method": method_id,
            "start": start,
            "stop": start + size - 1,
        },
    )
    conn.execute("SELECT setval('orders_order_id_seq', (SELECT max(id) FROM orders_order))")
    return method_id


def check_cancelled(conn: psycopg.Connection, method_id: int, size: int, side: str) -> None:
    cancelled, records = conn.execute(
        "SELECT count(*) FILTER (WHERE o.status = 'cancelled'), "
        "(SELECT count(*) FROM orders_historicalorder h WHERE h.payment_method_id = %(m)s "
        "AND h.status = 'cancelled' AND h.channel = 'command') "
        "FROM orders_order o WHERE o.payment_method_id = %(m)s",
        {"m": method_id},
    ).fetchone()
    if (cancelled, records) != (size, size):
        raise BenchError(
            f"{side}: {cancelled} of {size} orders cancelled, {records} history records"
        )


# -- the two sides ------------------------------------------------------------------------


@dataclass
class Run:
    size: int
    round: int
    side: str
    seconds: float
    peak_mib: float | None = None


def run_floor(conn: psycopg.Connection, method_id: int) -> float:
    statement = f"""
        WITH changed AS (
            UPDATE orders_order SET status = 'cancelled', updated_at = now()
            WHERE payment_method_id = %(m)s AND status = 'awaiting_payment'
                AND placed_at < now() - interval '1 day'
            RETURNING {HISTORY_COLUMNS}
        )
        INSERT INTO orders_historicalorder ({HISTORY_COLUMNS}, history_date,
            history_change_reason, history_type, history_user_id, channel)
        SELECT {HISTORY_COLUMNS}, now(), %(reason)s, '~', NULL, 'command' FROM changed
    """
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(statement, {"m": method_id, "reason": REASON})
    return time.perf_counter() - started


def run_command(code: str) -> tuple[float, float, str]:
    """Run the command in a child process; return (seconds, peak MiB, its summary line)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(  # noqa: S603 (this script, with a method code)
            [sys.executable, __file__, "--child", code], cwd=PROJECT, stdout=out, stderr=err
        )
        # Reaped here rather than by Popen.wait(), for this child's own resource usage.
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        output, errors = out.read(), err.read()
    if child.returncode != 0:
        raise BenchError(f"the command's process failed ({child.returncode}):\n{output}{errors}")
    result = json.loads(output.strip().splitlines()[-1])
    # ru_maxrss is in KiB on Linux.
    return result["seconds"], usage.ru_maxrss / 1024, result["summary"]


def child(code: str) -> int:
    """In the child: time ``set_payment_status`` on the set of method ``code``."""
    from io import StringIO

    configure_django("bench/bulk_status.py")
    from django.conf import settings
    from django.core.management import call_command

    settings.DEBUG = False
    out = StringIO()
    started = time.perf_counter()
    call_command(
        "set_payment_status",
        "--to=cancelled",
        f"--reason={REASON}",
        "--status=awaiting_payment",
        f"--method={code}",
        "--older-than=1d",
        stdout=out,
        stderr=StringIO(),
    )
    seconds = time.perf_counter() - started
    summary = " ".join(line.strip() for line in out.getvalue().splitlines()[:3])
    print(json.dumps({"seconds": seconds, "summary": summary}))
    return 0


# -- main -------------------------------------------------------------------------------


def bench(args: argparse.Namespace, settings_dict: dict[str, Any]) -> int:
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)
    connections.close_all()
    conn = psycopg.connect(**server_params(settings_dict, settings_dict["NAME"]), autocommit=True)
    runs: list[Run] = []
    with conn:
        new_set(conn, "empty", 0)
        conn.execute("VACUUM ANALYZE")
        _seconds, empty_mib, _summary = run_command("empty")
        print(f"command with nothing to do: peak memory {empty_mib:.0f} MiB (Django's footprint)")
        for size in args.sizes:
            print(f"\n{size:,} orders a side")
            print(f"{'round':>5}  {'side':<8} {'seconds':>8} {'peak MiB':>9}  setup s")
            for r in range(1, args.rounds + 1):
                started = time.perf_counter()
                methods = {
                    side: new_set(conn, f"{side[0]}{size}r{r}", size)
                    for side in ("command", "floor")
                }
                conn.execute("VACUUM ANALYZE")
                setup = time.perf_counter() - started
                order = ("floor", "command") if r % 2 else ("command", "floor")
                for side in order:
                    if side == "floor":
                        run = Run(size, r, side, run_floor(conn, methods[side]))
                    else:
                        seconds, peak, summary = run_command(f"c{size}r{r}")
                        run = Run(size, r, side, seconds, peak)
                        if args.verbose:
                            print(f"        {summary}")
                    check_cancelled(conn, methods[side], size, side)
                    runs.append(run)
                    peak_text = f"{run.peak_mib:9.0f}" if run.peak_mib is not None else " " * 9
                    print(f"{r:>5}  {side:<8} {run.seconds:8.2f} {peak_text}  {setup:.1f}")
            report(runs, size, empty_mib)
    return 0


def report(runs: list[Run], size: int, empty_mib: float) -> None:
    mine = [run for run in runs if run.size == size]
    command = [run.seconds for run in mine if run.side == "command"]
    floor = [run.seconds for run in mine if run.side == "floor"]
    paired = [
        c.seconds / f.seconds
        for c in mine
        for f in mine
        if c.side == "command" and f.side == "floor" and c.round == f.round
    ]
    peak = max(run.peak_mib for run in mine if run.peak_mib is not None)
    print(
        f"median of {len(command)}: command {statistics.median(command):.2f} s "
        f"({size / statistics.median(command):,.0f} orders/s), "
        f"floor {statistics.median(floor):.2f} s"
    )
    print(
        f"ratio command/floor (medians): "
        f"{statistics.median(command) / statistics.median(floor):.2f}   (goal <= 5)"
    )
    print(f"ratio command/floor (median of the rounds' ratios): {statistics.median(paired):.2f}")
    print(
        f"peak memory of the command: {peak:.0f} MiB "
        f"({peak - empty_mib:+.0f} MiB over the run with nothing to do)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="100000,300000",
        type=lambda value: sorted(int(v) for v in value.split(",")),
        help="orders a side, ascending (default 100000,300000)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per size (default 3)")
    parser.add_argument("--verbose", action="store_true", help="print the command's summary")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args.child)
    return run_on_bench_database(
        "bench/bulk_status.py",
        keep=args.keep,
        work=lambda settings_dict: bench(args, settings_dict),
    )


if __name__ == "__main__":
    sys.exit(main())
