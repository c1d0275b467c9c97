"""Sections 10 and 11: a callback arriving while a batch is locked waits, and counts."""

import threading
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections

from orderflow.audit import Channel
from orders.bulk import batch_locked
from orders.models import Order
from orders.models import PaymentStatus as S
from payments.models import PaymentTransaction, TransactionKind
from payments.services import apply_gateway_event
from tests.factories import event

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def lock_waiters() -> int:
    """Return how many other sessions of this database wait for a lock now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid() "
            "AND datname = current_database()"
        )
        return cursor.fetchone()[0]


def in_thread(job, results: dict, key: str) -> threading.Thread:
    def run():
        try:
            results[key] = job()
        except Exception as exc:  # reported back to the test
            results[key] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_callback_during_a_locked_batch_waits_and_is_applied_after_it(make_order):
    orders = [make_order() for _ in range(4)]
    target = orders[0]  # in the first batch
    locked, release = threading.Event(), threading.Event()

    def hold_first_batch(sender, pks, **kwargs):
        if target.pk in pks:
            locked.set()
            assert release.wait(timeout=30)

    results: dict = {}
    batch_locked.connect(hold_first_batch)
    try:
        command = in_thread(
            lambda: call_command(
                "set_payment_status",
                "--to=cancelled",
                "--reason=unpaid",
                "--status=awaiting_payment",
                "--batch-size=2",
                stdout=StringIO(),
                stderr=StringIO(),
            ),
            results,
            "command",
        )
        assert locked.wait(timeout=30), "the command never locked its first batch"
        callback = in_thread(
            lambda: apply_gateway_event(target, event("captured", "100.00", reference="tx_late")),
            results,
            "callback",
        )
        # The callback waits for the batch's row lock (seen from the database).
        for _ in range(300):
            if lock_waiters():
                break
            callback.join(timeout=0.1)
        assert lock_waiters() == 1
        assert callback.is_alive()
    finally:
        release.set()
        batch_locked.disconnect(hold_first_batch)
    command.join(timeout=60)
    callback.join(timeout=60)
    assert not command.is_alive() and not callback.is_alive()

    assert results["command"] is None
    applied = results["callback"]
    assert not isinstance(applied, Exception)
    # The override came first; a capture cannot move a cancelled order, but
    # the money is in the ledger and the order needs attention.
    assert applied.outcome == "ignored"
    order = Order.objects.get(pk=target.pk)
    assert order.status == S.CANCELLED
    assert order.captured_amount == Decimal("100.00")
    capture = PaymentTransaction.objects.get(order=order, kind=TransactionKind.CAPTURE)
    assert capture.reference == "tx_late"
    override = order.history.get(status=S.CANCELLED)
    assert (override.channel, override.history_change_reason) == (Channel.COMMAND, "unpaid")
    assert order.attention_code != ""
    assert order.needs_attention
    assert [Order.objects.get(pk=o.pk).status for o in orders[1:]] == [S.CANCELLED] * 3


def test_callback_committed_before_the_lock_is_seen(make_order):
    orders = [make_order() for _ in range(4)]
    late = orders[3]  # in the second batch
    results: dict = {}

    def capture_from_another_session(sender, pks, **kwargs):
        if late.pk not in pks and "callback" not in results:
            in_thread(
                lambda: apply_gateway_event(late, event("captured", "100.00")),
                results,
                "callback",
            ).join(timeout=30)

    batch_locked.connect(capture_from_another_session)
    try:
        out = StringIO()
        call_command(
            "set_payment_status",
            "--to=cancelled",
            "--reason=unpaid",
            "--status=awaiting_payment",
            "--batch-size=2",
            stdout=out,
            stderr=StringIO(),
        )
    finally:
        batch_locked.disconnect(capture_from_another_session)

    assert results["callback"].outcome == "applied"
    assert "skipped: status changed: 1" in out.getvalue()
    order = Order.objects.get(pk=late.pk)
    assert order.status == S.PAID
    assert not order.history.filter(status=S.CANCELLED).exists()
    assert order.attention_code == ""
