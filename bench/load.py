"""
Load test of the real server: gunicorn, the callback view, PostgreSQL.

Run from the project folder, on PostgreSQL only::

    DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/orderflow_bench \\
        .venv/bin/python bench/load.py [--orders 1500] [--concurrency 16]

The database named in DATABASE_URL is dropped and created again, migrated,
filled and dropped at the end (``--keep`` keeps it); its name must contain
"bench" so that a real database is never dropped.

**Data.** An active online payment method of the ``hmac`` gateway with a
webhook secret, and two sets of authorized orders, written in bulk as the
services place them (the order, its authorization in the ledger, its history
record): one for Django, one for the floor. ``DJANGO_DEBUG=1`` only lets
this script load the settings; the servers run with production settings.

**Servers.** Two gunicorn servers (sync workers, ``--workers`` each) on two
free ports of 127.0.0.1, against the same database: first ``orderflow.wsgi``
with ``DEBUG`` off, a random ``DJANGO_SECRET_KEY``, persistent database
connections (``DJANGO_CONN_MAX_AGE``) and HTTPS behind a proxy
(``X-Forwarded-Proto: https``, trusted); then ``bench/floor_app.py``, the
least a WSGI app can do for the same guarantee, under the same gunicorn
options. Servers are stopped at the end, on error and on Ctrl-C too.

**Load.** A child process runs an asyncio generator (``bench/loadgen.py``)
with a fixed number of requests in flight (``--concurrency``), over raw
HTTP/1.1. Every order gets a signed ``payment.captured`` for its
whole total, round-robin over the two servers; for some orders, the same
event again once the first delivery was answered (to the other server;
answer "duplicate"), the same event twice at once to both servers (one
"applied", one "duplicate"), or a ``payment.authorized`` after the capture
was answered ("stale"). Bodies are signed right before they are sent. A few
warm-up captures go first and are not timed.

**Check.** After each side, the rows of its orders must be exactly the
expected ones: each order paid with its total captured, one authorization
and one capture in the ledger (the capture pointing at its event), one
history record for the placement and one for the capture, and one gateway
event per event id with its expected outcome, processed once; nothing else
(no gateway event without an order either). Every answer must be the
expected one. The script exits with 1 when a row is missing or doubled, an
answer was not the expected one, or any 5xx happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchdb import PROJECT, BenchError, run_on_bench_database
from callbacks import CURRENCY, TOTAL, Job, job_for
from loadgen import Answer, Item, LoadResult, Send, Server, run_load

METHOD_CODE = "loadpay"
CALLBACK_PATH = f"/payments/callbacks/{METHOD_CODE}/"
SIDES = (("django", "LD", "orderflow.wsgi:application"), ("floor", "LF", "floor_app:application"))
START_TIMEOUT = 60


# -- the orders ----------------------------------------------------------------------------


def place_authorized(method: Any, prefix: str, count: int) -> list[Job]:
    """
    Write ``count`` authorized orders in bulk; return a capture job for each.

    The rows ``orders.services.place_order`` writes for an authorized checkout
    (the order, its authorization in the ledger, its creation in the history,
    on the storefront channel), in three ``bulk_create`` calls instead of
    thousands of service calls: the setup is not what is measured.
    """
    from django.db import transaction
    from django.utils import timezone

    from orderflow.audit import Channel
    from orders.models import Order, PaymentStatus
    from payments.models import PaymentTransaction, TransactionKind

    now = timezone.now()
    history = Order.history.model
    with transaction.atomic():
        orders = Order.objects.bulk_create(
            Order(
                number=f"{prefix}{i:06d}",
                status=PaymentStatus.AUTHORIZED,
                total=TOTAL,
                currency=CURRENCY,
                payment_method=method,
                gateway_reference=f"auth_{prefix}{i:06d}",
                placed_at=now,
            )
            for i in range(count)
        )
        PaymentTransaction.objects.bulk_create(
            PaymentTransaction(
                order=order,
                payment_method=method,
                kind=TransactionKind.AUTHORIZATION,
                amount=TOTAL,
                currency=CURRENCY,
                reference=order.gateway_reference,
                channel=Channel.STOREFRONT,
            )
            for order in orders
        )
        fields = [f.attname for f in history._meta.fields if not f.attname.startswith("history")]
        history.objects.bulk_create(
            history(
                **{name: getattr(order, name) for name in fields if name != "channel"},
                channel=Channel.STOREFRONT,
                history_date=now,
                history_type="+",
                history_change_reason="Order placed: Authorized.",
            )
            for order in orders
        )
    return [job_for(order, f"evt_{order.number}", f"tx_{order.number}") for order in orders]


# -- the plan: what to send, in which order ----------------------------------------------


@dataclass
class Plan:
    """The warm-up and timed items of one side, and the rows they must leave."""

    warmup: list[Item]
    items: list[Item]
    events: dict[str, tuple[str, str]]
    """Expected gateway events: event id -> (order number, outcome)."""
    ledger: list[tuple[str, str, str, str | None]]
    """Expected ledger rows of the whole total: (order number, kind, reference, event id)."""
    numbers: list[str]


def build_plan(jobs: list[Any], args: argparse.Namespace) -> Plan:
    """
    Turn capture jobs into items: plain, redelivered, concurrent pair or late authorization.

    The first ``args.warmup`` jobs are plain warm-up captures. Which orders get
    which mix is drawn with ``args.seed``, so every side gets the same mix.
    """
    from payments.gateways.hmac import build_body

    rng = random.Random(args.seed)
    plan = Plan([], [], {}, [], [job.number for job in jobs])
    for index, job in enumerate(jobs):
        plan.events[job.event_id] = (job.number, "applied")
        plan.ledger.append((job.number, "authorization", job.authorization, None))
        plan.ledger.append((job.number, "capture", job.transaction, job.event_id))
        server = index % 2
        other = 1 - server
        if index < args.warmup:
            plan.warmup.append(Item("warm-up", [Send(server, job.body)], ("applied",)))
            continue
        draw = rng.random()
        if draw < args.duplicates:
            later = Item("redelivery", [Send(other, job.body)], ("duplicate",))
            item = Item("capture", [Send(server, job.body)], ("applied",), [later])
        elif draw < args.duplicates + args.pairs:
            item = Item(
                "concurrent pair",
                [Send(server, job.body), Send(other, job.body)],
                ("applied", "duplicate"),
            )
        elif draw < args.duplicates + args.pairs + args.late:
            event_id = f"late_{job.number}"
            # No transaction: the authorization's own id is one the order has not seen.
            body = build_body(
                event_id=event_id, event_type="payment.authorized", order=job.number,
                currency=CURRENCY,
            )  # fmt: skip
            plan.events[event_id] = (job.number, "stale")
            later = Item("late authorization", [Send(other, body)], ("stale",))
            item = Item("capture", [Send(server, job.body)], ("applied",), [later])
        else:
            item = Item("capture", [Send(server, job.body)], ("applied",))
        plan.items.append(item)
    return plan


# -- the servers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_environment() -> dict[str, str]:
    """Production settings, with HTTPS terminated by a (pretend) proxy in front."""
    env = dict(os.environ)
    env.update(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_CONN_MAX_AGE="600",
        DJANGO_TRUST_X_FORWARDED_PROTO="1",
        DJANGO_LOG_LEVEL="WARNING",
        FLOOR_DATABASE_URL=os.environ["DATABASE_URL"],
    )
    return env


@contextlib.contextmanager
def gunicorn_servers(app: str, count: int, workers: int, logs: Path) -> Iterator[list[int]]:
    """Start ``count`` gunicorn servers of ``app``; yield their ports; always stop them."""
    env = server_environment()
    started: list[subprocess.Popen] = []
    ports: list[int] = []
    try:
        for _ in range(count):
            port = free_port()
            log = logs / f"{app.split(':')[0]}-{port}.log"
            command = [
                sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}",
                "--workers", str(workers), "--worker-class", "sync",
                "--pythonpath", str(PROJECT / "bench"), "--log-level", "warning",
            ]  # fmt: skip
            with log.open("wb") as output:
                # A session of its own: Ctrl-C reaches this script, which stops it.
                process = subprocess.Popen(  # noqa: S603 (gunicorn, with this script's options)
                    command, cwd=PROJECT, env=env, stdout=output, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            started.append(process)
            wait_until_answering(process, port, log)
            ports.append(port)
        yield ports
    finally:
        for process in started:
            stop(process)


def wait_until_answering(process: subprocess.Popen, port: int, log: Path) -> None:
    """Return once the server answers HTTP; raise BenchError if it dies or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"gunicorn on port {port} exited:\n{tail(log)}")
        try:
            asyncio.run(Server(port).get())
            return
        except (OSError, asyncio.IncompleteReadError):
            time.sleep(0.2)
    raise BenchError(f"gunicorn on port {port} did not answer in {START_TIMEOUT} s:\n{tail(log)}")


def stop(process: subprocess.Popen) -> None:
    """Stop a gunicorn master and its workers (TERM, then KILL after 15 s)."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# -- the check -----------------------------------------------------------------------------


def compare(what: str, expected: Counter, actual: Counter) -> list[str]:
    """Say which expected rows are missing and which rows are extra (or doubled)."""
    problems = []
    for word, rows in (("missing", expected - actual), ("extra", actual - expected)):
        if rows:
            example = next(iter(rows))
            problems.append(f"{what}: {rows.total()} {word}, e.g. {example}")
    return problems


def check_rows(plan: Plan, prefix: str) -> tuple[list[str], dict[str, int]]:
    """
    Compare the rows of a side's orders with the ones the plan implies.

    Return the problems (empty when exactly the expected rows are there) and
    how many rows of each table were checked.
    """
    from orders.models import Order
    from payments.models import GatewayEvent, PaymentTransaction

    numbers = plan.numbers
    orders = Counter(
        Order.objects.filter(number__startswith=prefix).values_list(
            "number", "status", "captured_amount", "refunded_amount", "attention_code"
        )
    )
    ledger = Counter(
        PaymentTransaction.objects.filter(order__number__startswith=prefix).values_list(
            "order__number", "kind", "reference", "amount", "event__event_id"
        )
    )
    history = Counter(
        Order.history.filter(number__startswith=prefix).values_list(
            "number", "history_type", "status"
        )
    )
    events = Counter(
        GatewayEvent.objects.filter(order__number__startswith=prefix).values_list(
            "order__number", "event_id", "outcome", "attempts"
        )
    )
    zero = TOTAL - TOTAL
    problems = [
        *compare("orders", Counter((n, "paid", TOTAL, zero, "") for n in numbers), orders),
        *compare(
            "ledger rows",
            Counter((n, kind, ref, TOTAL, event_id) for n, kind, ref, event_id in plan.ledger),
            ledger,
        ),
        *compare(
            "history records",
            Counter(row for n in numbers for row in ((n, "+", "authorized"), (n, "~", "paid"))),
            history,
        ),
        *compare(
            "gateway events",
            Counter((n, event_id, outcome, 1) for event_id, (n, outcome) in plan.events.items()),
            events,
        ),
    ]
    orphans = GatewayEvent.objects.filter(order__isnull=True).count()
    if orphans:
        problems.append(f"gateway events without an order: {orphans}")
    counts = {
        "orders": orders.total(),
        "ledger rows": ledger.total(),
        "history records": history.total(),
        "gateway events": events.total(),
    }
    return problems, counts


def check_answers(result: LoadResult) -> list[str]:
    """Every item must have got the answers it expects, and no 5xx."""
    unexpected = [
        (item.label, sorted(a.status for a in answers))
        for item, answers in [*result.warmup, *result.timed]
        if sorted(a.status for a in answers) != sorted(item.expect)
        or any(a.http != 200 for a in answers)
    ]
    if not unexpected:
        return []
    return [f"unexpected answers: {len(unexpected)}, e.g. {unexpected[0]}"]


# -- one side, the report ----------------------------------------------------------------


@dataclass
class SideResult:
    name: str
    result: LoadResult
    problems: list[str]
    counts: dict[str, int]

    @property
    def answers(self) -> list[Answer]:
        return [answer for _item, answers in self.result.timed for answer in answers]

    @property
    def server_errors(self) -> int:
        everything = [a for _item, answers in self.result.warmup for a in answers] + self.answers
        return sum(1 for answer in everything if answer.http >= 500)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.server_errors

    def rate(self, status: str | None = None) -> float:
        answers = [a for a in self.answers if status is None or a.status == status]
        return len(answers) / self.result.seconds

    def percentiles_ms(self) -> tuple[float, float, float]:
        cuts = statistics.quantiles([a.seconds * 1000 for a in self.answers], n=100)
        return cuts[49], cuts[94], cuts[98]


def run_side(
    name: str, app: str, prefix: str, plan: Plan, secret: str, args: argparse.Namespace, logs: Path
) -> SideResult:
    """Serve one side on two gunicorn servers, put the plan's load on them, check the rows."""
    with gunicorn_servers(app, 2, args.workers, logs) as ports:
        result = run_load(
            plan.warmup,
            plan.items,
            ports,
            path=CALLBACK_PATH,
            secret=secret,
            concurrency=args.concurrency,
        )
    problems, counts = check_rows(plan, prefix)
    problems += check_answers(result)
    return SideResult(name, result, problems, counts)


def describe(side: SideResult, args: argparse.Namespace) -> None:
    answers = side.answers
    print(
        f"{side.name}: {len(answers):,} requests in {side.result.seconds:.1f} s "
        f"(2 servers x {args.workers} sync workers, {args.concurrency} in flight), "
        f"after {len(side.result.warmup)} warm-up callbacks"
    )
    sent = Counter(a.label for a in answers)
    print("  requests: " + ", ".join(f"{label} {n:,}" for label, n in sorted(sent.items())))
    print(
        f"  client:   {1000 * side.result.cpu_seconds / len(answers):.2f} ms CPU a request "
        "in the load generator"
    )
    http = Counter(a.http for a in answers)
    print("  HTTP:     " + ", ".join(f"{code} x {n:,}" for code, n in sorted(http.items())))
    statuses = Counter(a.status for a in answers)
    print("  answers:  " + ", ".join(f"{status} {n:,}" for status, n in statuses.most_common()))
    checked = ", ".join(f"{n:,} {what}" for what, n in side.counts.items())
    if side.problems:
        print(f"  check:    FAILED ({checked})")
        for problem in side.problems:
            print(f"    - {problem}")
    else:
        print(f"  check:    ok, exactly the expected rows ({checked}); every answer as expected")
    print()


def report(sides: list[SideResult]) -> None:
    print(
        f"{'':<20} {'requests':>8} {'req/s':>7} {'applied/s':>9} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'5xx':>4}  check"
    )
    for side in sides:
        p50, p95, p99 = side.percentiles_ms()
        print(
            f"{side.name + ' (2 servers)':<20} {len(side.answers):>8,} {side.rate():>7.1f} "
            f"{side.rate('applied'):>9.1f} {p50:>7.1f} {p95:>7.1f} {p99:>7.1f} "
            f"{side.server_errors:>4}  {'ok' if not side.problems else 'FAILED'}"
        )
    by_name = {side.name: side for side in sides}
    if {"django", "floor"} <= by_name.keys():
        django, floor = by_name["django"], by_name["floor"]
        print(
            f"\nratio django/floor: {django.rate() / floor.rate():.2f} (req/s), "
            f"{django.rate('applied') / floor.rate('applied'):.2f} (applied/s)"
        )


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--orders", type=int, default=1500, help="orders per side (default 1500)")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="requests in flight (default 16)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="gunicorn sync workers per server (default 2)"
    )
    parser.add_argument(
        "--duplicates",
        type=float,
        default=0.10,
        help="share of orders whose capture is delivered again later (default 0.10)",
    )
    parser.add_argument(
        "--pairs",
        type=float,
        default=0.05,
        help="share of orders whose capture goes to both servers at once (default 0.05)",
    )
    parser.add_argument(
        "--late",
        type=float,
        default=0.05,
        help="share of orders that get an authorization after the capture (default 0.05)",
    )
    parser.add_argument(
        "--warmup", type=int, default=40, help="untimed captures first, per side (default 40)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the mix (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)
    if args.duplicates + args.pairs + args.late > 1 or args.orders < 1 or args.concurrency < 1:
        parser.error("the shares must add up to at most 1; orders and concurrency at least 1")
    return args


def interrupt(signum: int, frame: Any) -> None:
    """Treat a termination request like Ctrl-C: the servers and the database are cleaned up."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        return run_on_bench_database(
            "bench/load.py", keep=args.keep, work=lambda settings_dict: bench(args)
        )
    except KeyboardInterrupt:
        print("interrupted (servers stopped)", file=sys.stderr)
        return 130


def bench(args: argparse.Namespace) -> int:
    from django.core.management import call_command
    from django.db import connection

    from payments.models import PaymentMethod, PaymentMethodKind

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    secret = secrets.token_urlsafe(32)
    method = PaymentMethod.objects.create(
        code=METHOD_CODE,
        name="Load test gateway",
        kind=PaymentMethodKind.ONLINE,
        gateway="hmac",
        webhook_secret=secret,
    )
    plans = {
        name: build_plan(place_authorized(method, prefix, args.warmup + args.orders), args)
        for name, prefix, _app in SIDES
    }
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"setup (not timed): {time.perf_counter() - started:.1f} s\n")

    sides = []
    with tempfile.TemporaryDirectory(prefix="orderflow-load-") as logs:
        for name, prefix, app in SIDES:
            side = run_side(name, app, prefix, plans[name], secret, args, Path(logs))
            describe(side, args)
            sides.append(side)
    report(sides)
    return 0 if all(side.ok for side in sides) else 1


if __name__ == "__main__":
    sys.exit(main())
