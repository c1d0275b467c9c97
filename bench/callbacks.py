"""
Applied gateway callbacks per second: the Django stack against raw psycopg floors.

Run from the project folder, on PostgreSQL only::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/orderflow_bench \\
        .venv/bin/python bench/callbacks.py [--callbacks N] [--repeats R] [--explain]

The database named in DATABASE_URL is dropped and created again, migrated,
filled and dropped at the end (``--keep`` keeps it); its name must contain
"bench" so that a real database is never dropped. Background orders (with
their ledger rows, gateway events and history) are generated before
``VACUUM ANALYZE``, so that the planner sees tables that look used.

Every callback is a signed ``payment.captured`` body for the whole total of
an authorized order. Four sides capture disjoint sets of orders:

**django**: the body is posted with ``django.test.Client``: all the
middleware, URL routing, the view, the signature check, the inbox row in its
own transaction, then processing in a second transaction (event row lock,
order row lock, ledger row, running total, transition, history record,
outcome, stored attention). Only the socket and the WSGI server are
missing. The connection stays open between callbacks, as with
``CONN_MAX_AGE`` > 0.

**floor** (the honest floor): the least SQL that does the same job with the
app's guarantee, through raw psycopg with server-side binding (statements
are prepared after a few runs). The event is stored first, alone, in
autocommit (``INSERT ... ON CONFLICT (payment method, event id) DO
NOTHING``, linked to its order in the same statement); then ONE
transaction locks the order (``SELECT ... FOR UPDATE`` by number), inserts
the ledger row (``ON CONFLICT DO NOTHING RETURNING``), updates the order and
inserts its history row (one statement: ``WITH changed AS (UPDATE ...
RETURNING *) INSERT ... SELECT``), and marks the event applied. The
statements are sent one by one, each waiting for its answer (no pipeline).

**floor-1tx** (the one-transaction floor): the same rows from one call of a
``plpgsql`` function the script creates: one statement, one transaction,
one round trip; without the stored-first guarantee (a failure loses what
the gateway sent).

**replay**: a recording of the statements Django sends for one callback,
replayed through raw psycopg with each order's values; it keeps all of the
application's SQL and only shows what the ORM and the rest of the stack
cost on top of it.

All three raw sides do, per callback, the signature check and the parsing
of the gateway adapter (``HmacGateway.verify`` and ``parse``; the replay its
own inline HMAC and JSON parsing). The floors handle the path the bench
takes (a capture the order's status allows) and raise on any other.

Sides run on disjoint sets of orders, after a warm-up of each, in an order
that rotates each round; after every run the database is checked to hold
one capture, one applied event and one history record per order, and after
all of them one order of each side is compared with a Django order row for
row (ledger, order, history record, event). The output gives the
statements and transactions per callback of each side, every run, and the
median of the rounds' ratios django/side (the runs of a round are next to
each other in time, so they share most of the machine's noise). Bodies are
signed right before each run, whose callbacks must all arrive within the
gateway's 300 s signature window. ``--explain`` prints the plan of every
distinct statement Django sends for one callback.
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
from benchdb import STATUS_MIX, BenchError, run_on_bench_database, server_params

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


# -- background rows --------------------------------------------------------------------


def seed_background(count: int, online_pk: int, offline_pk: int) -> None:
    """
    Insert ``count`` orders with their ledger rows, gateway events and history, in SQL.

    Seven in ten are paid through the bench's gateway, the others offline.
    Their ids stay below ID_SPACING, so the replay never takes one for an id
    of the recorded callback.
    """
    from django.db import connection

    if count >= ID_SPACING:
        raise BenchError(f"--background must stay below {ID_SPACING}")
    history_columns = (
        "id, channel, number, status, total, currency, customer_email, gateway_reference, "
        "captured_amount, refunded_amount, placed_at, updated_at, history_date, "
        "history_change_reason, history_type, history_user_id, payment_method_id, "
        "dispute_status, disputed_amount"
    )
    statements = [
        f"""
        INSERT INTO orders_order (id, number, status, total, currency, payment_method_id,
            customer_email, gateway_reference, captured_amount, refunded_amount,
            disputed_amount, dispute_status, placed_at, updated_at, attention_code)
        SELECT i, 'BG' || lpad(i::text, 8, '0'), s.status, s.total, '{CURRENCY}', s.method,
            'customer' || (i / 3) || '@example.com',
            CASE WHEN s.method = {online_pk} THEN 'pi_bg_' || i ELSE '' END,
            CASE WHEN s.status IN ('paid', 'refunded') THEN s.total
                 WHEN s.status = 'partially_paid' THEN round(s.total / 2, 2)
                 ELSE 0 END,
            CASE WHEN s.status = 'refunded' THEN s.total ELSE 0 END,
            0, '', now() - i * interval '67 seconds', now() - i * interval '67 seconds', ''
        FROM generate_series(1, {count}) AS i,
        LATERAL (SELECT {STATUS_MIX} AS status, 20.99 + (i * 37) % 480 AS total,
                 CASE WHEN i % 10 < 7 THEN {online_pk} ELSE {offline_pk} END AS method) AS s
        """,
        # The ledger each status implies.
        f"""
        INSERT INTO payments_paymenttransaction (order_id, payment_method_id, kind, amount,
            currency, reference, created_at, created_by_id, event_id, channel)
        SELECT o.id, o.payment_method_id, k.kind, k.amount, o.currency, k.prefix || o.id,
            o.placed_at + interval '1 minute', NULL, NULL,
            CASE WHEN o.payment_method_id = {online_pk} THEN 'gateway' ELSE 'admin' END
        FROM orders_order o
        CROSS JOIN LATERAL (VALUES
            ('authorization', o.total, 'pi_bg_', o.status NOT IN ('awaiting_payment', 'declined')
                AND o.payment_method_id = {online_pk}),
            ('capture', o.captured_amount, 'ch_bg_', o.captured_amount > 0),
            ('refund', o.refunded_amount, 're_bg_', o.refunded_amount > 0),
            ('void', o.total, 'pi_bg_',
                o.status = 'cancelled' AND o.payment_method_id = {online_pk})
        ) AS k(kind, amount, prefix, wanted)
        WHERE o.id <= {count} AND k.wanted
        """,
        # One applied event per movement the gateway reported, and a few ignored ones.
        f"""
        INSERT INTO payments_gatewayevent (payment_method_id, event_id, event_type, raw_body,
            received_at, outcome, detail, order_id, processed_at, kind, amount, reference,
            deferred, attempts, acknowledged_at, acknowledged_by_id)
        SELECT t.payment_method_id, 'evt_bg_' || t.id, 'payment.' || e.type, '{{}}',
            t.created_at, e.outcome, '', t.order_id, t.created_at, e.type, t.amount,
            t.reference, false, 1, NULL, NULL
        FROM payments_paymenttransaction t
        CROSS JOIN LATERAL (SELECT
            CASE t.kind WHEN 'authorization' THEN 'authorized' WHEN 'capture' THEN 'captured'
                 WHEN 'refund' THEN 'refunded' ELSE 'voided' END AS type,
            CASE WHEN t.order_id % 97 = 5 THEN 'ignored' ELSE 'applied' END AS outcome) AS e
        WHERE t.order_id <= {count} AND t.payment_method_id = {online_pk}
        """,
        # Placed, then (unless still awaiting payment) one change to where it stands.
        f"""
        INSERT INTO orders_historicalorder ({history_columns})
        SELECT o.id, 'storefront', o.number, 'awaiting_payment', o.total, o.currency,
            o.customer_email, o.gateway_reference, 0, 0, o.placed_at, o.placed_at, o.placed_at,
            NULL::text, '+', NULL::integer, o.payment_method_id, '', 0
        FROM orders_order o WHERE o.id <= {count}
        UNION ALL
        SELECT o.id, 'gateway', o.number, o.status, o.total, o.currency, o.customer_email,
            o.gateway_reference, o.captured_amount, o.refunded_amount, o.placed_at,
            o.updated_at, o.placed_at + interval '1 minute', 'background', '~', NULL,
            o.payment_method_id, '', 0
        FROM orders_order o WHERE o.id <= {count} AND o.status <> 'awaiting_payment'
        """,
        # The ignored events flag their orders, as the services would have stored it.
        f"""
        UPDATE orders_order SET attention_code = 'ignored_event'
        WHERE id IN (SELECT order_id FROM payments_gatewayevent
                     WHERE outcome = 'ignored' AND order_id <= {count})
        """,
    ]
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


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
            f"{transactions} transactions + {autocommit} autocommit statement(s) "
            f"= {transactions + autocommit} commits"
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


# -- the floors -------------------------------------------------------------------------

CAPTURE_FROM = frozenset({"awaiting_payment", "authorized", "partially_paid", "declined"})
"""The statuses Order.capture leaves from."""

# The honest floor: the event stored alone first, then one processing transaction.
FLOOR_STORE = """
INSERT INTO payments_gatewayevent (payment_method_id, event_id, event_type, raw_body,
    received_at, outcome, detail, order_id, processed_at, kind, amount, reference, deferred,
    attempts, acknowledged_at, acknowledged_by_id)
VALUES (%s, %s, %s, %s, now(), 'received', '',
    (SELECT id FROM orders_order WHERE number = %s AND payment_method_id = %s),
    NULL, '', NULL, '', false, 0, NULL, NULL)
ON CONFLICT (payment_method_id, event_id) DO NOTHING
RETURNING id
"""
FLOOR_LOCK = """
SELECT id, status, total, currency, captured_amount, refunded_amount, payment_method_id
FROM orders_order WHERE number = %s FOR UPDATE
"""
FLOOR_LEDGER = """
INSERT INTO payments_paymenttransaction (order_id, payment_method_id, kind, amount, currency,
    reference, created_at, created_by_id, event_id, channel)
VALUES (%s, %s, 'capture', %s, %s, %s, now(), NULL, %s, 'gateway')
ON CONFLICT (payment_method_id, kind, reference) DO NOTHING
RETURNING id
"""
HISTORY_COLUMNS = (
    "id, channel, number, status, total, currency, customer_email, gateway_reference, "
    "captured_amount, refunded_amount, placed_at, updated_at, history_date, "
    "history_change_reason, history_type, history_user_id, payment_method_id, "
    "dispute_status, disputed_amount"
)
HISTORY_FROM_CHANGED = (
    "id, 'gateway', number, status, total, currency, customer_email, gateway_reference, "
    "captured_amount, refunded_amount, placed_at, updated_at, now(), {reason}, '~', NULL, "
    "payment_method_id, dispute_status, disputed_amount"
)
FLOOR_ORDER_AND_HISTORY = f"""
WITH changed AS (
    UPDATE orders_order SET status = %s, captured_amount = %s, updated_at = now()
    WHERE id = %s RETURNING *
)
INSERT INTO orders_historicalorder ({HISTORY_COLUMNS})
SELECT {HISTORY_FROM_CHANGED.format(reason="%s")} FROM changed
"""
FLOOR_OUTCOME = """
UPDATE payments_gatewayevent SET outcome = 'applied', detail = '', order_id = %s,
    processed_at = now(), kind = 'captured', amount = %s, reference = %s, deferred = false,
    attempts = attempts + 1
WHERE id = %s
"""

# The one-transaction floor: everything in one function call.
ONE_TRANSACTION_FUNCTION = f"""
CREATE OR REPLACE FUNCTION bench_capture_one_transaction(
    p_method bigint, p_event_id text, p_event_type text, p_body text, p_number text,
    p_amount numeric, p_currency text, p_reference text, p_reason text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    o record;
    v_event bigint;
    v_ledger bigint;
    v_net numeric;
    v_status text;
BEGIN
    SELECT id, status, total, currency, captured_amount, refunded_amount, payment_method_id
    INTO o FROM orders_order WHERE number = p_number FOR UPDATE;
    IF NOT FOUND OR o.payment_method_id <> p_method OR o.currency <> p_currency
       OR o.status NOT IN ({", ".join(f"'{s}'" for s in sorted(CAPTURE_FROM))}) THEN
        RAISE EXCEPTION 'the floor applies captures the order allows only: %', p_number;
    END IF;
    INSERT INTO payments_gatewayevent (payment_method_id, event_id, event_type, raw_body,
        received_at, outcome, detail, order_id, processed_at, kind, amount, reference,
        deferred, attempts, acknowledged_at, acknowledged_by_id)
    VALUES (p_method, p_event_id, p_event_type, p_body, now(), 'applied', '', o.id, now(),
        'captured', p_amount, p_reference, false, 1, NULL, NULL)
    ON CONFLICT (payment_method_id, event_id) DO NOTHING
    RETURNING id INTO v_event;
    IF v_event IS NULL THEN
        RETURN 'duplicate';
    END IF;
    INSERT INTO payments_paymenttransaction (order_id, payment_method_id, kind, amount,
        currency, reference, created_at, created_by_id, event_id, channel)
    VALUES (o.id, p_method, 'capture', p_amount, o.currency, p_reference, now(), NULL,
        v_event, 'gateway')
    ON CONFLICT (payment_method_id, kind, reference) DO NOTHING
    RETURNING id INTO v_ledger;
    IF v_ledger IS NULL THEN
        RAISE EXCEPTION 'capture % is already in the ledger', p_reference;
    END IF;
    v_net := o.captured_amount + p_amount - o.refunded_amount;
    v_status := CASE WHEN v_net <= 0 THEN 'refunded' WHEN v_net >= o.total THEN 'paid'
                     ELSE 'partially_paid' END;
    WITH changed AS (
        UPDATE orders_order SET status = v_status, captured_amount = o.captured_amount + p_amount,
            updated_at = now()
        WHERE id = o.id RETURNING *
    )
    INSERT INTO orders_historicalorder ({HISTORY_COLUMNS})
    SELECT {HISTORY_FROM_CHANGED.format(reason="p_reason")} FROM changed;
    RETURN v_status;
END
$$
"""
FLOOR_ONE_TRANSACTION = "SELECT bench_capture_one_transaction(%s, %s, %s, %s, %s, %s, %s, %s, %s)"


def status_for_net_paid(net_paid: Decimal, total: Decimal) -> str:
    """Order.status_for_net_paid, without the model."""
    if net_paid <= 0:
        return "refunded"
    return "paid" if net_paid >= total else "partially_paid"


def capture_reason(amount: Decimal, currency: str, reference: str) -> str:
    """The history reason the app writes for a capture (payments.facts._describe)."""
    from orderflow.money import format_money

    return f"Payment captured: {format_money(amount, currency)} (ref. {reference})."


def verified(gateway: Any, secret: str, job: Job) -> Any:
    """The adapter's own signature check and parsing: what any receiver must do."""
    gateway.verify(body=job.body, headers={"X-Orderflow-Signature": job.header}, secret=secret)
    parsed = gateway.parse(job.body)
    if parsed.fact is None or parsed.fact.kind != "captured":
        raise BenchError(f"Floor: {job.number}'s callback is not a capture")
    return parsed


def floor_callback(conn: psycopg.Connection, cursor: Any, gateway, secret, method_pk, job):
    """One callback, stored first in autocommit, then processed in one transaction."""
    parsed = verified(gateway, secret, job)
    fact = parsed.fact
    body = job.body.decode()
    cursor.execute(
        FLOOR_STORE,
        (method_pk, parsed.event_id, parsed.event_type, body, parsed.order_number, method_pk),
    )
    stored = cursor.fetchone()
    if stored is None:
        raise BenchError(f"Floor: event {parsed.event_id} was stored before")
    with conn.transaction():
        cursor.execute(FLOOR_LOCK, (parsed.order_number,))
        row = cursor.fetchone()
        if row is None:
            raise BenchError(f"Floor: no order {parsed.order_number}")
        order_pk, status, total, currency, captured, refunded, order_method = row
        amount = fact.amount
        if order_method != method_pk or currency != fact.currency or status not in CAPTURE_FROM:
            raise BenchError(f"Floor: {parsed.order_number} cannot take this capture")
        cursor.execute(
            FLOOR_LEDGER, (order_pk, method_pk, amount, currency, fact.reference, stored[0])
        )
        if cursor.fetchone() is None:
            raise BenchError(f"Floor: capture {fact.reference} is already in the ledger")
        captured += amount
        cursor.execute(
            FLOOR_ORDER_AND_HISTORY,
            (
                status_for_net_paid(captured - refunded, total),
                captured,
                order_pk,
                capture_reason(amount, currency, fact.reference),
            ),
        )
        cursor.execute(FLOOR_OUTCOME, (order_pk, amount, fact.reference, stored[0]))


def floor_one_transaction_callback(conn, cursor, gateway, secret, method_pk, job) -> None:
    """One callback in one function call: one statement, one transaction."""
    parsed = verified(gateway, secret, job)
    fact = parsed.fact
    cursor.execute(
        FLOOR_ONE_TRANSACTION,
        (
            method_pk,
            parsed.event_id,
            parsed.event_type,
            job.body.decode(),
            parsed.order_number,
            fact.amount,
            fact.currency,
            fact.reference,
            capture_reason(fact.amount, fact.currency, fact.reference),
        ),
    )
    if cursor.fetchone()[0] == "duplicate":
        raise BenchError(f"One-transaction floor: event {parsed.event_id} was stored before")


FLOORS = {"floor": floor_callback, "floor-1tx": floor_one_transaction_callback}


def run_floor(side: str, conn, secret: str, method_pk: int, jobs: list[Job], cursor=None):
    """Run every job through a floor; return the wall-clock and this process's CPU seconds."""
    from payments.gateways.hmac import HmacGateway

    callback, gateway = FLOORS[side], HmacGateway()
    cursor = cursor if cursor is not None else conn.cursor()
    started, cpu = time.perf_counter(), time.process_time()
    for job in jobs:
        callback(conn, cursor, gateway, secret, method_pk, job)
    return time.perf_counter() - started, time.process_time() - cpu


class CountingCursor:
    """A cursor that counts statements and the transactions they run in."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn, self.cursor = conn, conn.cursor()
        self.statements = self.autocommit = self.transactions = 0
        self._in_transaction = False

    def execute(self, query: str, params: Any = None) -> Any:
        idle = self.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        self.statements += 1
        if idle:
            self.autocommit += 1
        elif not self._in_transaction:
            self.transactions += 1
        self._in_transaction = not idle
        return self.cursor.execute(query, params)

    def fetchone(self) -> Any:
        return self.cursor.fetchone()

    def describe(self, callbacks: int) -> str:
        explicit = self.transactions / callbacks
        return (
            f"{self.statements / callbacks:g} statement(s), no savepoints, "
            f"{explicit:g} transaction(s) + {self.autocommit / callbacks:g} autocommit "
            f"statement(s) = {explicit + self.autocommit / callbacks:g} commits"
        )


# -- the Django side and the replay ----------------------------------------------------


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


def run_replay(conn: psycopg.Connection, secret: str, jobs: list[Job]) -> tuple[float, float]:
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
            raise BenchError(f"Replay: stale or missing timestamp for {job.number}")
        message = str(timestamp).encode() + b"." + job.body
        expected = hmac.new(key, message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, candidate):
            raise BenchError(f"Replay: bad signature for {job.number}")
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
    """Every side must have written the same rows: capture, applied event, history, status."""
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


# What differs between two orders by construction: ids, times, numbers,
# references and bodies. Every other column must hold the same value.
NOT_COMPARED = {
    "payments_paymenttransaction": {"id", "order_id", "event_id", "created_at"},
    "orders_order": {"id", "number", "gateway_reference", "placed_at", "updated_at"},
    "orders_historicalorder": {
        "history_id",
        "id",
        "number",
        "gateway_reference",
        "placed_at",
        "updated_at",
        "history_date",
    },
    "payments_gatewayevent": {
        "id",
        "event_id",
        "raw_body",
        "received_at",
        "processed_at",
        "order_id",
    },
}
ROWS_OF_ORDER = {
    "payments_paymenttransaction": "SELECT * FROM payments_paymenttransaction "
    "WHERE order_id = %s ORDER BY id",
    "orders_order": "SELECT * FROM orders_order WHERE id = %s",
    "orders_historicalorder": "SELECT * FROM orders_historicalorder "
    "WHERE id = %s ORDER BY history_id",
    "payments_gatewayevent": "SELECT * FROM payments_gatewayevent WHERE order_id = %s ORDER BY id",
}


def rows_of(conn: psycopg.Connection, job: Job) -> dict[str, list[dict[str, Any]]]:
    """Every row the callback of ``job`` wrote or changed, with its own values masked."""
    # Longest first: the order number is part of the event id and the reference.
    tokens = [
        (job.transaction, "<reference>"),
        (job.event_id, "<event id>"),
        (job.authorization, "<authorization>"),
        (job.number, "<number>"),
    ]

    def masked(value: Any) -> Any:
        if isinstance(value, str):
            for token, name in tokens:
                value = value.replace(token, name)
        return value

    found: dict[str, list[dict[str, Any]]] = {}
    for table, query in ROWS_OF_ORDER.items():
        cursor = conn.execute(query, (job.pk,))
        names = [column.name for column in cursor.description]
        found[table] = [
            {
                name: masked(value)
                for name, value in zip(names, row, strict=True)
                if name not in NOT_COMPARED[table]
            }
            for row in cursor.fetchall()
        ]
    return found


def compare_rows(conn: psycopg.Connection, django_job: Job, job: Job, side: str) -> None:
    """Raise BenchError unless ``job``'s rows are those of ``django_job``, column by column."""
    expected, actual = rows_of(conn, django_job), rows_of(conn, job)
    problems = []
    for table, rows in expected.items():
        theirs = actual[table]
        if len(rows) != len(theirs):
            problems.append(f"{table}: django wrote {len(rows)} row(s), {side} {len(theirs)}")
            continue
        for index, (row, their) in enumerate(zip(rows, theirs, strict=True)):
            for column, value in row.items():
                if their[column] != value:
                    problems.append(
                        f"{table} row {index + 1}, {column}: django {value!r}, "
                        f"{side} {their[column]!r}"
                    )
    if problems:
        raise BenchError(f"{side} did not write what Django writes:\n  " + "\n  ".join(problems))


def short_statement(text: str, limit: int = 400) -> str:
    """A statement for a reader: the select list elided, the rest cut at ``limit``."""
    text = " ".join(text.split())
    if text.startswith("SELECT ") and " FROM " in text:
        text = "SELECT ... FROM " + text.split(" FROM ", 1)[1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain_django(conn: psycopg.Connection, steps: list[tuple[Any, ...]]) -> None:
    """
    Print EXPLAIN (ANALYZE, BUFFERS) of each distinct statement of a recorded callback.

    ``steps`` is the recording compiled for an order nobody captured yet. Each
    statement is explained in a savepoint rolled back at once, then run for
    real so that the next ones see its rows; everything is rolled back at the end.
    """
    cursor = conn.cursor()
    now = datetime.now(UTC)
    returned: list[Any] = []
    seen: set[str] = set()
    number = 0
    print("\nEXPLAIN (ANALYZE, BUFFERS) of each distinct statement of one Django callback")
    print("(parameters substituted; savepoints left out):")
    with conn.transaction(force_rollback=True):
        for sql_text, params, fills, slot, kind in steps:
            if kind != "sql" or sql_text.startswith(("SAVEPOINT", "RELEASE SAVEPOINT")):
                continue
            if fills:
                params = list(params)
                for index, source in fills:
                    params[index] = now if source == NOW else returned[source]
            if sql_text not in seen:
                seen.add(sql_text)
                number += 1
                print(f"\n[{number}] {short_statement(cursor.mogrify(sql_text, params))}")
                with conn.transaction():
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql_text, params)
                    for (line,) in cursor.fetchall():
                        print(f"      {line}")
                    raise psycopg.Rollback()
            cursor.execute(sql_text, params)
            if cursor.description is not None:
                rows = cursor.fetchall()
                if slot is not None:
                    returned.append(rows[0][0])
    print()


# -- main -------------------------------------------------------------------------------

SIDES = ("django", "floor", "floor-1tx", "replay")
PREFIX = {"django": "D", "floor": "F", "floor-1tx": "T", "replay": "R"}
LABEL = {
    "django": "the whole stack",
    "floor": "honest floor: event stored first, then one transaction",
    "floor-1tx": "one-transaction floor: one plpgsql call",
    "replay": "replay of Django's own statements",
}


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
    parser.add_argument(
        "--background",
        type=int,
        default=20_000,
        help="orders (with ledger rows, events, history) generated before ANALYZE (20000)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument(
        "--show-sql", action="store_true", help="print the recorded statements of one callback"
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print EXPLAIN (ANALYZE, BUFFERS) of each distinct statement Django sends",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile one extra Django run with cProfile (not counted) and print the top",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.callbacks < args.repeats:
        parser.error("--repeats must be at least 1 and --callbacks at least --repeats")
    if args.background < 0:
        parser.error("--background must not be negative")
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
    offline = PaymentMethod.objects.create(
        code="benchwire", name="Bench wire", kind=PaymentMethodKind.OFFLINE
    )
    seed_background(args.background, method.pk, offline.pk)
    [captured_order] = place_orders(method, [CAPTURED["number"]], [CAPTURED["authorization"]])
    captured = job_for(captured_order, CAPTURED["event_id"], CAPTURED["transaction"])
    warm = {side: make_jobs(method, f"W{PREFIX[side]}", WARMUP) for side in SIDES}
    sets = {
        side: [make_jobs(method, f"{PREFIX[side]}{r}", size) for r, size in enumerate(sizes)]
        for side in SIDES
    }
    [explained] = make_jobs(method, "X", 1) if args.explain else [None]
    profile_set = make_jobs(method, "P", sizes[0]) if args.profile else []
    with connection.cursor() as cursor:
        cursor.execute(ONE_TRANSACTION_FUNCTION)
        cursor.execute("VACUUM ANALYZE")
    setup_seconds = time.perf_counter() - started

    client = Client()
    url = reverse("payments:callback", args=[METHOD_CODE])
    server = server_params(settings_dict, settings_dict["NAME"])
    # The replay binds parameters on the client, as Django does; the floors
    # bind them on the server, and psycopg prepares a statement after five runs.
    replay_conn = psycopg.connect(**server, autocommit=True, cursor_factory=psycopg.ClientCursor)
    floor_conn = psycopg.connect(**server, autocommit=True)
    runs: list[Run] = []

    def run(side: str, jobs: list[Job], cursor: Any = None) -> tuple[float, float]:
        sign_all(jobs, secret)
        if side == "django":
            return run_django(client, url, jobs)
        if side == "replay":
            return run_replay(replay_conn, secret, jobs)
        return run_floor(side, floor_conn, secret, method.pk, jobs, cursor)

    # DEBUG off: with DEBUG on, Django keeps every statement in memory.
    with override_settings(DEBUG=False, ALLOWED_HOSTS=["testserver"]), replay_conn, floor_conn:
        sign_all([captured], secret)
        recording = record_callback(client, url, captured)
        for job in [*warm["replay"], *(j for s in sets["replay"] for j in s)]:
            job.steps = compile_replay(recording, captured, job, method.pk)

        counted = {side: CountingCursor(floor_conn) for side in FLOORS}
        for side in SIDES:
            run(side, warm[side], counted.get(side))
            check_applied(warm[side], f"{side} (warm-up)")
        # The prepared jobs are many long-lived objects; keep the garbage
        # collector from scanning them again and again during the runs.
        gc.collect()
        gc.freeze()

        for r in range(repeats):
            for side in SIDES[r % len(SIDES) :] + SIDES[: r % len(SIDES)]:
                jobs = sets[side][r]
                seconds, cpu = run(side, jobs)
                check_applied(jobs, side)
                runs.append(Run(r + 1, side, len(jobs), seconds, cpu))

        reference = sets["django"][0][0]
        for side in SIDES[1:]:
            compare_rows(floor_conn, reference, sets[side][0][0], side)

        report(args, recording, counted, runs, setup_seconds)
        if explained is not None:
            sign_all([explained], secret)
            explain_django(replay_conn, compile_replay(recording, captured, explained, method.pk))
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
    args: argparse.Namespace,
    recording: Recording,
    counted: dict[str, CountingCursor],
    runs: list[Run],
    setup_seconds: float,
) -> None:
    if args.show_sql:
        print("statements of one callback, as Django sends them (the replay sends these):")
        for step in recording.steps:
            if step.kind == "sql":
                text = step.sql if len(step.sql) < 150 else step.sql[:147] + "..."
                print(f"  {'[autocommit] ' if step.autocommit else ''}{text}")
            else:
                print(f"  -- {step.kind.upper()}")
        print()

    print(
        f"setup (not timed): {setup_seconds:.1f} s, {args.background} background orders "
        "with their ledger rows, events and history before VACUUM ANALYZE"
    )
    print("sides:")
    for side in SIDES:
        print(f"  {side:<10} {LABEL[side]}")
    print("SQL per callback (BEGIN and COMMIT not counted as statements):")
    print(f"  django     {recording.describe()} (execute wrapper)")
    for side, cursor in counted.items():
        print(f"  {side:<10} {cursor.describe(WARMUP)} (counted on the warm-up)")
    print(f"  replay     the same {len(recording.statements)} statements as django")
    print("rows: one order of each side matches a Django order column for column")
    print()
    print(
        f"{'round':>5}  {'side':<10} {'callbacks':>9} {'seconds':>8} {'per second':>11} "
        f"{'client CPU ms/callback':>23}"
    )
    for run in runs:
        print(
            f"{run.round:>5}  {run.side:<10} {run.callbacks:>9} {run.seconds:>8.2f} "
            f"{run.rate:>11.1f} {run.cpu_ms:>23.2f}"
        )
    print()
    medians = {
        side: statistics.median(run.rate for run in runs if run.side == side) for side in SIDES
    }
    print(
        f"median of {args.repeats} per second: "
        + ", ".join(f"{side} {rate:.1f}" for side, rate in medians.items())
    )
    # The runs of a round are next to each other in time, so they share most
    # of the machine's noise; the median of their ratios resists it best.
    rates = {(run.round, run.side): run.rate for run in runs}
    for side in SIDES[1:]:
        ratios = [rates[r + 1, "django"] / rates[r + 1, side] for r in range(args.repeats)]
        print(
            f"ratio django/{side} (median of the {len(ratios)} rounds' ratios): "
            f"{statistics.median(ratios):.2f}   [{LABEL[side]}]"
        )


if __name__ == "__main__":
    sys.exit(main())
