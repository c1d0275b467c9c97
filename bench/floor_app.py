"""
The floor for ``bench/load.py``: the least a WSGI app can do per callback.

No Django. It answers ``POST /payments/callbacks/<method code>/`` for the
``hmac`` gateway with the same guarantee as orderflow's inbox for the
callbacks the load test sends (``payment.captured``, and
``payment.authorized`` after a capture):

1. read the payment method (active, online, ``hmac``) and its webhook secret;
2. check the ``X-Orderflow-Signature`` header (``t=<unix>,v1=<hex>``, HMAC-SHA256
   of ``"<t>.<body>"``, at most 300 s away) and parse the JSON body;
3. store the event in its own committed statement
   (``INSERT ... ON CONFLICT DO NOTHING`` into ``payments_gatewayevent``), so
   that a redelivery finds the stored row;
4. in one transaction: lock the event (a final outcome answers "duplicate"),
   lock the order, insert the ledger row (``ON CONFLICT DO NOTHING`` on the
   ledger's unique reference), update the order's status and captured total
   and insert its history row in one statement, and write the outcome.

It leaves out what orderflow does beyond that: comparing a redelivered body
with the stored one (conflicts), the other event types and the status
rules (a capture is applied whatever the order's status), deferred facts, the stored
attention, the audit context, translations and logging. Run it
with gunicorn, ``FLOOR_DATABASE_URL`` naming the database::

    FLOOR_DATABASE_URL=postgres://postgres@127.0.0.1:5432/orderflow_bench \\
        gunicorn --pythonpath bench floor_app:application

Each worker process keeps one psycopg connection, opened on its first request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg

PATH = re.compile(r"/payments/callbacks/([-a-zA-Z0-9_]+)/")
SIGNATURE = re.compile(r"t=([0-9]{1,12}),v1=([0-9a-f]{64})")
TOLERANCE_SECONDS = 300

_connection: psycopg.Connection | None = None


class Refused(Exception):
    """Answer the sender with this HTTP status and message; nothing was processed."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def connection() -> psycopg.Connection:
    """Return this worker's connection, opened on first use (after gunicorn forks)."""
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(os.environ["FLOOR_DATABASE_URL"], autocommit=True)
    return _connection


def application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """WSGI entry point: one callback in, one JSON answer out."""
    try:
        status, answer = handle(environ)
    except Refused as exc:
        status, answer = exc.status, {"error": str(exc)}
    body = json.dumps(answer).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def handle(environ: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Verify, store and process one callback; return the HTTP status and the answer."""
    match = PATH.fullmatch(environ.get("PATH_INFO", ""))
    if match is None:
        raise Refused("404 Not Found", "no such page")
    if environ["REQUEST_METHOD"] != "POST":
        raise Refused("405 Method Not Allowed", "POST only")
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    conn = connection()
    method = conn.execute(
        "SELECT id, webhook_secret FROM payments_paymentmethod "
        "WHERE code = %s AND is_active AND kind = 'online' AND gateway = 'hmac'",
        (match.group(1),),
    ).fetchone()
    if method is None:
        raise Refused("404 Not Found", "no active online payment method")
    method_id, secret = method
    verify(environ.get("HTTP_X_ORDERFLOW_SIGNATURE", ""), body, secret)
    try:
        data = json.loads(body)
        amount = Decimal(data["amount"]) if "amount" in data else None
        event_id, event_type, number = data["id"], data["type"], data["order"]
    except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
        raise Refused("400 Bad Request", f"malformed body ({type(exc).__name__})") from None
    event_pk = store(conn, method_id, event_id, event_type, number, body)
    outcome = process(conn, event_pk, method_id, data, amount)
    if outcome == "unmatched":
        return "404 Not Found", {"error": f"no order {number}"}
    return "200 OK", {"status": outcome}


def verify(header: str, body: bytes, secret: str) -> None:
    """Raise Refused unless ``header`` signs ``body`` with ``secret`` within the tolerance."""
    match = SIGNATURE.fullmatch(header)
    if match is None or not secret:
        raise Refused("401 Unauthorized", "missing or unreadable signature")
    timestamp = int(match.group(1))
    if abs(time.time() - timestamp) > TOLERANCE_SECONDS:
        raise Refused("401 Unauthorized", "stale signature")
    expected = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, match.group(2)):
        raise Refused("401 Unauthorized", "the signature does not match")


def store(
    conn: psycopg.Connection,
    method_id: int,
    event_id: str,
    event_type: str,
    number: str,
    body: bytes,
) -> int:
    """Keep the event in its own committed statement; return its id (a redelivery's too)."""
    row = conn.execute(
        "INSERT INTO payments_gatewayevent (payment_method_id, event_id, event_type, raw_body, "
        "received_at, outcome, detail, order_id, kind, reference, deferred, attempts) "
        "VALUES (%s, %s, %s, %s, now(), 'received', '', "
        "(SELECT id FROM orders_order WHERE number = %s AND payment_method_id = %s), "
        "'', '', false, 0) "
        "ON CONFLICT (payment_method_id, event_id) DO NOTHING RETURNING id",
        (method_id, event_id, event_type, body.decode(), number, method_id),
    ).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT id FROM payments_gatewayevent WHERE payment_method_id = %s AND event_id = %s",
            (method_id, event_id),
        ).fetchone()
    return row[0]


def process(
    conn: psycopg.Connection,
    event_pk: int,
    method_id: int,
    data: dict[str, Any],
    amount: Decimal | None,
) -> str:
    """Apply a stored event at most once; return its outcome."""
    reference = data.get("transaction") or data["id"]
    kind = {"payment.captured": "captured", "payment.authorized": "authorized"}.get(
        data["type"], ""
    )
    with conn.transaction():
        (outcome,) = conn.execute(
            "SELECT outcome FROM payments_gatewayevent WHERE id = %s FOR UPDATE", (event_pk,)
        ).fetchone()
        if outcome != "received":
            return "duplicate"
        order = conn.execute(
            "SELECT id, total, currency, captured_amount, refunded_amount FROM orders_order "
            "WHERE number = %s AND payment_method_id = %s FOR UPDATE",
            (data["order"], method_id),
        ).fetchone()
        if order is None:
            outcome = "unmatched"
        elif data.get("currency") != order[2]:
            outcome = "rejected"
        elif kind == "captured" and amount is not None and amount > 0:
            outcome = capture(conn, order, method_id, event_pk, reference, amount)
        elif kind == "authorized" and order[3] > 0:
            outcome = "stale"  # reported after the capture: changes nothing
        else:
            outcome = "ignored"  # not something the floor handles
        conn.execute(
            "UPDATE payments_gatewayevent SET outcome = %s, order_id = %s, processed_at = now(), "
            "kind = %s, amount = %s, reference = %s, attempts = attempts + 1 WHERE id = %s",
            (outcome, order[0] if order else None, kind, amount, reference, event_pk),
        )
    return outcome


def capture(
    conn: psycopg.Connection,
    order: tuple[Any, ...],
    method_id: int,
    event_pk: int,
    reference: str,
    amount: Decimal,
) -> str:
    """Record a capture once, move the order's total and status, write its history row."""
    order_id, total, currency, captured, refunded = order
    inserted = conn.execute(
        "INSERT INTO payments_paymenttransaction (order_id, payment_method_id, kind, amount, "
        "currency, reference, created_at, channel, event_id) "
        "VALUES (%s, %s, 'capture', %s, %s, %s, now(), 'gateway', %s) "
        "ON CONFLICT (payment_method_id, kind, reference) DO NOTHING RETURNING id",
        (order_id, method_id, amount, currency, reference, event_pk),
    ).fetchone()
    if inserted is None:
        return "duplicate"
    captured += amount
    status = "paid" if captured - refunded >= total else "partially_paid"
    conn.execute(
        "WITH changed AS (UPDATE orders_order SET captured_amount = %s, status = %s, "
        "updated_at = now() WHERE id = %s RETURNING *) "
        "INSERT INTO orders_historicalorder (id, channel, number, status, total, currency, "
        "customer_email, gateway_reference, captured_amount, refunded_amount, placed_at, "
        "updated_at, history_date, history_change_reason, history_type, payment_method_id, "
        "dispute_status, disputed_amount) "
        "SELECT id, 'gateway', number, status, total, currency, customer_email, "
        "gateway_reference, captured_amount, refunded_amount, placed_at, updated_at, now(), "
        "%s, '~', payment_method_id, dispute_status, disputed_amount FROM changed",
        (captured, status, order_id, f"Payment captured: {amount} {currency} (ref. {reference})."),
    )
    return "applied"
