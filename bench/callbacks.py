"""
Applied gateway callbacks per second: the Django stack against raw psycopg.

Run from the project folder, on PostgreSQL only::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/orderflow_bench \\
        .venv/bin/python bench/callbacks.py [--callbacks N] [--repeats R]

The database named in DATABASE_URL is dropped and created again, migrated,
filled and dropped at the end (``--keep`` keeps it); its name must contain
"bench" so that a real database is never dropped.

**Django side.** Each callback is a signed ``payment.captured`` body for the
whole total of an authorized order, posted with ``django.test.Client``: all
the middleware, URL routing, the view, the signature check, the inbox row in
its own transaction, then processing in a second transaction (event row
lock, order row lock, ledger row, running total, transition, history
record, outcome). Only the socket and the WSGI server are missing. The
connection stays open between callbacks, as with ``CONN_MAX_AGE`` > 0.

**Baseline.** One representative callback (an extra order, not timed) runs
through the Django side with an execute wrapper that records every SQL
statement Django sends, its parameters, whether it ran in autocommit mode,
and each commit. That recording is compiled into a replay for every
baseline order: the statements, savepoints included, are sent again in the
same order and in the same transaction structure (autocommit statements,
then the inbox transaction, then the processing transaction) through one
raw psycopg connection with the cursor class Django uses (client-side
binding). The parameters that depend on the order (ids, order number,
event id, transaction reference, raw body, reason text) are substituted
before the timed loop; times are "now" and the ids returned by ``INSERT ...
RETURNING`` are filled in during the loop, so later statements use them as
Django's do. Every row a statement returns is fetched. Per callback, the
baseline also parses the signature header, checks the timestamp, computes
and compares the HMAC, and parses the JSON body.

The baseline leaves out everything else: HTTP request and response
objects, middleware, routing, model instances, the ORM's SQL compilation,
django-fsm and django-simple-history's Python work, the audit context,
translations, and checking each statement's result (rows matched by an
UPDATE, duplicates). It is the minimum cost of the same database work from
Python, not a realistic alternative implementation.

Both sides run on disjoint sets of orders, after a warm-up of each,
alternating which goes first; after every run the database is checked to
hold one capture, one applied event and one history record per order. The
output gives the statement counts, every run, the best and the median rate
of each side, and the median of the rounds' ratios (the two runs of a round
are next to each other in time, so they share most of the machine's noise).
Bodies are signed right before each run, whose callbacks must all arrive
within the gateway's 300 s signature window.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import hmac
import json
import secrets
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg
from benchdb import BenchError, run_on_bench_database, server_params

METHOD_CODE = "benchpay"
TOTAL = Decimal("25.00")
CURRENCY = "USD"
WARMUP = 25
# Every sequence starts at a multiple of this, so an id in a captured
# statement is recognised by its value and never taken for a count or a flag.
ID_SPACING = 10_000_000
# Values of the captured callback; "CAPT" marks them so that one left
# unsubstituted in the replay is caught.
CAPTURED = {
    "number": "CAPT-ORDER",
    "event_id": "CAPT-EVENT",
    "transaction": "CAPT-TX",
    "authorization": "CAPT-AUTH",
}
MARK = "CAPT"
NOW = -1  # fill marker: the time of the callback


def space_sequences() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT schemaname, sequencename FROM pg_sequences "
            "WHERE schemaname = current_schema() ORDER BY sequencename"
        )
        for index, (schema, sequence) in enumerate(cursor.fetchall(), start=1):
            cursor.execute(
                "SELECT setval(%s::regclass, %s, false)",
                [f'"{schema}"."{sequence}"', index * ID_SPACING],
            )


# -- setup ------------------------------------------------------------------------------


@dataclass
class Job:
    """One callback to send: the order it is for and its body."""

    pk: int
    number: str
    authorization: str
    placed_at: datetime
    event_id: str
    transaction: str
    body: bytes
    header: str = ""
    steps: list[tuple[Any, ...]] | None = None


def place_orders(method: Any, numbers: list[str], references: list[str]) -> list[Any]:
    """Place authorized orders through the service, in one transaction (setup only)."""
    from django.db import transaction

    from orders.services import place_order
    from payments.gateways import PaymentResult

    placed = []
    with transaction.atomic():
        for number, reference in zip(numbers, references, strict=True):
            placed.append(
                place_order(
                    number=number,
                    total=TOTAL,
                    currency=CURRENCY,
                    payment_method=method,
                    initial=PaymentResult("authorized", reference=reference),
                )
            )
    return placed


def job_for(order: Any, event_id: str, transaction: str) -> Job:
    """Return the job capturing ``order``'s whole total."""
    from payments.gateways.hmac import build_body

    body = build_body(
        event_id=event_id,
        event_type="payment.captured",
        order=order.number,
        currency=CURRENCY,
        amount=TOTAL,
        transaction=transaction,
    )
    return Job(
        order.pk,
        order.number,
        order.gateway_reference,
        order.placed_at,
        event_id,
        transaction,
        body,
    )


def make_jobs(method: Any, prefix: str, count: int) -> list[Job]:
    numbers = [f"{prefix}{i:06d}" for i in range(count)]
    orders = place_orders(method, numbers, [f"auth_{number}" for number in numbers])
    return [job_for(order, f"evt_{order.number}", f"tx_{order.number}") for order in orders]


def sign_all(jobs: list[Job], secret: str) -> None:
    """Sign right before a run: the gateway refuses timestamps older than 300 s."""
    from payments.gateways.hmac import sign

    timestamp = int(time.time())
    for job in jobs:
        job.header = sign(job.body, secret, timestamp)


# -- capture and replay -----------------------------------------------------------------


class Step(NamedTuple):
    """One thing Django did: ``begin``, ``commit``, ``rollback`` or ``sql``."""

    kind: str
    sql: str = ""
    params: Any = None
    returned: int | None = None
    """The id an ``INSERT ... RETURNING`` gave back."""
    autocommit: bool = False


@dataclass
class Recording:
    """The SQL Django sent for one callback, in order, with the transaction structure."""

    steps: list[Step]

    @property
    def statements(self) -> list[str]:
        return [step.sql for step in self.steps if step.kind == "sql"]

    def describe(self) -> str:
        statements = self.statements
        savepoints = sum(1 for text in statements if "SAVEPOINT" in text)
        transactions = sum(1 for step in self.steps if step.kind == "commit")
        autocommit = sum(1 for step in self.steps if step.kind == "sql" and step.autocommit)
        return (
            f"{len(statements)} statements ({savepoints} of them SAVEPOINT/RELEASE), "
            f"{transactions} transactions + {autocommit} autocommit statement(s)"
        )


def record_callback(client: Any, url: str, job: Job) -> Recording:
    """Post one callback through Django and record every statement it sends."""
    from django.db import connection

    steps: list[Step] = []

    def wrapper(execute, sql_text, params, many, context):
        autocommit = context["connection"].get_autocommit()
        # A statement outside autocommit that follows a commit or an autocommit
        # statement opens a transaction (Django's outermost atomic block).
        if not autocommit and (not steps or steps[-1].kind == "commit" or steps[-1].autocommit):
            steps.append(Step("begin"))
        result = execute(sql_text, params, many, context)
        returned = None
        if " RETURNING " in sql_text:
            # Read the id without consuming the result Django is about to fetch.
            returned = int(context["cursor"].cursor.pgresult.get_value(0, 0))
        steps.append(Step("sql", sql_text, params, returned, autocommit))
        return result

    original_commit, original_rollback = connection.commit, connection.rollback

    def commit():
        steps.append(Step("commit"))
        return original_commit()

    def rollback():
        steps.append(Step("rollback"))
        return original_rollback()

    # Instance attributes shadow the methods Atomic calls; deleting them restores those.
    connection.commit, connection.rollback = commit, rollback
    try:
        with connection.execute_wrapper(wrapper):
            response = post(client, url, job)
    finally:
        del connection.commit, connection.rollback
    if any(step.kind == "rollback" for step in steps):
        raise BenchError("The recorded callback rolled back; it is not representative.")
    if response.status_code != 200 or response.json().get("status") != "applied":
        raise BenchError(f"The recorded callback was not applied: {response.content!r}")
    return Recording(steps)


def compile_replay(
    recording: Recording, captured: Job, job: Job, method_pk: int
) -> list[tuple[Any, ...]]:
    """
    Return the recorded steps with ``job``'s values in place of the captured ones.

    Each step is ``(sql, params, fills, slot, kind)``: ``fills`` lists the
    parameters set during the loop, as ``(index, NOW)`` for the time of the
    callback or ``(index, n)`` for the id returned by the n-th ``INSERT ...
    RETURNING``; ``slot`` is n for such an insert.
    """
    exact: dict[Any, Any] = {
        method_pk: method_pk,
        captured.pk: job.pk,
        captured.number: job.number,
        captured.authorization: job.authorization,
        captured.placed_at: job.placed_at,
        captured.event_id: job.event_id,
        captured.transaction: job.transaction,
        captured.body.decode(): job.body.decode(),
    }
    tokens = [
        (captured.number, job.number),
        (captured.authorization, job.authorization),
        (captured.event_id, job.event_id),
        (captured.transaction, job.transaction),
    ]
    slots: dict[int, int] = {}
    compiled: list[tuple[Any, ...]] = []
    for step in recording.steps:
        if step.kind != "sql":
            compiled.append((None, None, (), None, step.kind))
            continue
        fills: list[tuple[int, int]] = []
        values = None
        if step.params is not None:
            values = tuple(
                _substitute(value, index, exact, tokens, slots, fills)
                for index, value in enumerate(step.params)
            )
        slot = None
        if step.returned is not None:
            slot = slots[step.returned] = len(slots)
        compiled.append((step.sql, values, tuple(fills), slot, step.kind))
    return compiled


def _substitute(value, index, exact, tokens, slots, fills):
    """Return ``value`` for the replayed order, or note in ``fills`` that the loop sets it."""
    if isinstance(value, bool) or value is None:
        return value
    try:
        if value in exact:
            new = exact[value]
            return type(value)(new) if isinstance(value, int) else new
    except TypeError:  # unhashable
        pass
    if isinstance(value, int) and value >= ID_SPACING:
        if value not in slots:
            raise BenchError(f"The recorded callback uses an id {value} the replay cannot map.")
        fills.append((index, slots[value]))
        return value
    if isinstance(value, datetime):
        fills.append((index, NOW))
        return value
    if isinstance(value, str):
        new = str(value)
        for old, replacement in tokens:
            new = new.replace(old, replacement)
        if MARK in new:
            raise BenchError(f"The recorded callback sends {value!r}; the replay cannot map it.")
        return new if new != value else value
    return value


# -- the two sides ----------------------------------------------------------------------


def post(client: Any, url: str, job: Job) -> Any:
    return client.post(
        url, job.body, content_type="application/json", HTTP_X_ORDERFLOW_SIGNATURE=job.header
    )


def run_django(client: Any, url: str, jobs: list[Job]) -> tuple[float, float]:
    """Post every job; return the wall-clock and this process's CPU seconds."""
    started, cpu = time.perf_counter(), time.process_time()
    for job in jobs:
        response = post(client, url, job)
        if response.status_code != 200 or b'"applied"' not in response.content:
            raise BenchError(
                f"Django side: callback for {job.number} answered "
                f"{response.status_code} {response.content[:300]!r}"
            )
    return time.perf_counter() - started, time.process_time() - cpu


def run_baseline(conn: psycopg.Connection, secret: str, jobs: list[Job]) -> tuple[float, float]:
    """Replay every job; return the wall-clock and this process's CPU seconds."""
    key = secret.encode()
    cursor = conn.cursor()
    execute, fetchall = cursor.execute, cursor.fetchall
    started, cpu = time.perf_counter(), time.process_time()
    for job in jobs:
        # The non-SQL work any receiver does: header, timestamp, HMAC, JSON.
        timestamp, candidate = None, ""
        for item in job.header.split(","):
            name, _sep, value = item.strip().partition("=")
            if name == "t":
                timestamp = int(value)
            elif name == "v1":
                candidate = value
        if timestamp is None or abs(time.time() - timestamp) > 300:
            raise BenchError(f"Baseline: stale or missing timestamp for {job.number}")
        message = str(timestamp).encode() + b"." + job.body
        expected = hmac.new(key, message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, candidate):
            raise BenchError(f"Baseline: bad signature for {job.number}")
        json.loads(job.body)

        now = datetime.now(UTC)
        returned: list[Any] = []
        for sql_text, params, fills, slot, kind in job.steps:
            if kind == "begin":
                conn.autocommit = False
                continue
            if kind == "commit":
                conn.commit()
                conn.autocommit = True
                continue
            if fills:
                params = list(params)
                for index, source in fills:
                    params[index] = now if source == NOW else returned[source]
            execute(sql_text, params)
            if cursor.description is not None:
                rows = fetchall()
                if slot is not None:
                    returned.append(rows[0][0])
    return time.perf_counter() - started, time.process_time() - cpu


def check_applied(jobs: list[Job], side: str) -> None:
    """Both sides must have written the same rows: capture, applied event, history, status."""
    from orders.models import Order
    from payments.models import EventOutcome, GatewayEvent, PaymentTransaction

    pks = [job.pk for job in jobs]
    counts = {
        "paid orders": Order.objects.filter(pk__in=pks, status="paid").count(),
        "captures": PaymentTransaction.objects.filter(order__in=pks, kind="capture").count(),
        "applied events": GatewayEvent.objects.filter(
            order__in=pks, outcome=EventOutcome.APPLIED
        ).count(),
        "history records": Order.history.filter(id__in=pks, status="paid").count(),
    }
    wrong = {name: count for name, count in counts.items() if count != len(jobs)}
    if wrong:
        raise BenchError(f"{side} side: expected {len(jobs)} of each, found {wrong}")


# -- main -------------------------------------------------------------------------------


@dataclass
class Run:
    round: int
    side: str
    callbacks: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.callbacks / self.seconds

    @property
    def cpu_ms(self) -> float:
        """This process's CPU time per callback; the rest is waiting for PostgreSQL."""
        return 1000 * self.cpu_seconds / self.callbacks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--callbacks",
        type=int,
        default=2000,
        help="callbacks per side, split evenly across the timed runs (default 2000)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each side (default 3)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument(
        "--show-sql", action="store_true", help="print the recorded statements of one callback"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile one extra Django run with cProfile (not counted) and print the top",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.callbacks < args.repeats:
        parser.error("--repeats must be at least 1 and --callbacks at least --repeats")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", "No directory at", UserWarning)  # whitenoise, no static
    return run_on_bench_database(
        "bench/callbacks.py", keep=args.keep, work=lambda settings_dict: bench(args, settings_dict)
    )


def bench(args: argparse.Namespace, settings_dict: dict[str, Any]) -> int:
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings
    from django.urls import reverse

    from payments.models import PaymentMethod, PaymentMethodKind

    repeats = args.repeats
    sizes = [args.callbacks // repeats + (r < args.callbacks % repeats) for r in range(repeats)]
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    space_sequences()
    secret = secrets.token_urlsafe(32)
    method = PaymentMethod.objects.create(
        code=METHOD_CODE,
        name="Bench gateway",
        kind=PaymentMethodKind.ONLINE,
        gateway="hmac",
        webhook_secret=secret,
    )
    [captured_order] = place_orders(method, [CAPTURED["number"]], [CAPTURED["authorization"]])
    captured = job_for(captured_order, CAPTURED["event_id"], CAPTURED["transaction"])
    warm_django = make_jobs(method, "WD", WARMUP)
    warm_baseline = make_jobs(method, "WB", WARMUP)
    django_sets = [make_jobs(method, f"D{r}", size) for r, size in enumerate(sizes)]
    baseline_sets = [make_jobs(method, f"B{r}", size) for r, size in enumerate(sizes)]
    profile_set = make_jobs(method, "P", sizes[0]) if args.profile else []
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    setup_seconds = time.perf_counter() - started

    client = Client()
    url = reverse("payments:callback", args=[METHOD_CODE])
    baseline_conn = psycopg.connect(
        **server_params(settings_dict, settings_dict["NAME"]),
        autocommit=True,
        cursor_factory=psycopg.ClientCursor,
    )
    runs: list[Run] = []
    # DEBUG off: with DEBUG on, Django keeps every statement in memory.
    with override_settings(DEBUG=False, ALLOWED_HOSTS=["testserver"]), baseline_conn:
        sign_all([captured], secret)
        recording = record_callback(client, url, captured)
        for job in [*warm_baseline, *(j for s in baseline_sets for j in s)]:
            job.steps = compile_replay(recording, captured, job, method.pk)

        sign_all(warm_django, secret)
        run_django(client, url, warm_django)
        sign_all(warm_baseline, secret)
        run_baseline(baseline_conn, secret, warm_baseline)
        check_applied(warm_django, "Django (warm-up)")
        check_applied(warm_baseline, "baseline (warm-up)")
        # The prepared jobs are many long-lived objects; keep the garbage
        # collector from scanning them again and again during the runs.
        gc.collect()
        gc.freeze()

        for r in range(repeats):
            order = ("baseline", "django") if r % 2 == 0 else ("django", "baseline")
            for side in order:
                if side == "django":
                    jobs = django_sets[r]
                    sign_all(jobs, secret)
                    seconds, cpu = run_django(client, url, jobs)
                else:
                    jobs = baseline_sets[r]
                    sign_all(jobs, secret)
                    seconds, cpu = run_baseline(baseline_conn, secret, jobs)
                check_applied(jobs, side)
                runs.append(Run(r + 1, side, len(jobs), seconds, cpu))

        report(args, recording, runs, setup_seconds)
        if args.profile:
            profile_django(client, url, profile_set, secret)
    return 0


def profile_django(client: Any, url: str, jobs: list[Job], secret: str) -> None:
    import cProfile
    import pstats

    from django.db import connection

    in_database = 0.0

    def timer(execute, sql_text, params, many, context):
        nonlocal in_database
        begun = time.perf_counter()
        try:
            return execute(sql_text, params, many, context)
        finally:
            in_database += time.perf_counter() - begun

    sign_all(jobs, secret)
    profiler = cProfile.Profile()
    with connection.execute_wrapper(timer):
        profiler.enable()
        seconds, _cpu = run_django(client, url, jobs)
        profiler.disable()
    print(f"\nprofile: {len(jobs)} Django callbacks in {seconds:.2f} s under cProfile;")
    print(
        f"  {in_database:.2f} s inside cursor.execute "
        "(round trips and psycopg), commits not included"
    )
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)


def report(
    args: argparse.Namespace, recording: Recording, runs: list[Run], setup_seconds: float
) -> None:
    if args.show_sql:
        print("statements of one callback, as Django sends them (the baseline replays these):")
        for step in recording.steps:
            if step.kind == "sql":
                text = step.sql if len(step.sql) < 150 else step.sql[:147] + "..."
                print(f"  {'[autocommit] ' if step.autocommit else ''}{text}")
            else:
                print(f"  -- {step.kind.upper()}")
        print()

    print(f"setup (not timed): {setup_seconds:.1f} s")
    print(f"SQL per callback: django {recording.describe()}")
    print(f"                  baseline the same {len(recording.statements)} statements, replayed")
    print()
    print(
        f"{'round':>5}  {'side':<9} {'callbacks':>9} {'seconds':>8} {'per second':>11} "
        f"{'client CPU ms/callback':>23}"
    )
    for run in runs:
        print(
            f"{run.round:>5}  {run.side:<9} {run.callbacks:>9} {run.seconds:>8.2f} "
            f"{run.rate:>11.1f} {run.cpu_ms:>23.2f}"
        )
    rates = {
        side: [run.rate for run in runs if run.side == side] for side in ("django", "baseline")
    }
    best = {side: max(values) for side, values in rates.items()}
    median = {side: statistics.median(values) for side, values in rates.items()}
    print()
    print(
        f"best of {args.repeats}:   django {best['django']:.1f}/s, "
        f"baseline {best['baseline']:.1f}/s"
    )
    print(
        f"median of {args.repeats}: django {median['django']:.1f}/s, "
        f"baseline {median['baseline']:.1f}/s"
    )
    print(f"ratio django/baseline (best): {best['django'] / best['baseline']:.2f}   (goal >= 0.25)")
    print(f"ratio django/baseline (median): {median['django'] / median['baseline']:.2f}")
    # The two runs of a round are next to each other in time, so they share
    # most of the machine's noise; the median of their ratios resists it best.
    paired = [
        django.rate / baseline.rate
        for django in runs
        for baseline in runs
        if django.side == "django"
        and baseline.side == "baseline"
        and django.round == baseline.round
    ]
    print(
        f"ratio django/baseline (median of the {len(paired)} rounds' ratios): "
        f"{statistics.median(paired):.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
