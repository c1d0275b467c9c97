"""Section 11: racing writers on one order, on PostgreSQL with real threads."""

import threading
from decimal import Decimal

import pytest
from django.db import connections

from orders.exceptions import DiscouragedTransition
from orders.models import Order
from orders.models import PaymentStatus as S
from orders.services import override_status
from payments.models import PaymentTransaction, TransactionKind
from payments.services import apply_gateway_event
from tests.factories import event

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_together(*jobs):
    """Start every job at the same moment in its own thread; return results/errors."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)

    def worker(i, job):
        try:
            barrier.wait(timeout=30)
            results[i] = job()
        except Exception as exc:  # reported back to the test
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return results


def test_same_capture_from_16_threads_is_recorded_once(make_order):
    order = make_order(S.AUTHORIZED)
    capture = event("captured", "100.00", reference="tx_same")

    results = run_together(*[lambda: apply_gateway_event(order, capture)] * 16)

    assert not [r for r in results if isinstance(r, Exception)]
    outcomes = sorted(r.outcome for r in results)
    assert outcomes == ["applied"] + ["duplicate"] * 15
    order = Order.objects.get(pk=order.pk)
    assert order.status == S.PAID
    assert order.captured_amount == Decimal("100.00")
    assert PaymentTransaction.objects.filter(order=order, kind=TransactionKind.CAPTURE).count() == 1
    assert order.history.filter(status=S.PAID).count() == 1


def test_different_partial_captures_from_16_threads_all_count(make_order):
    order = make_order(S.AUTHORIZED, total="160.00")

    results = run_together(
        *[lambda i=i: apply_gateway_event(order, event("captured", "10.00")) for i in range(16)]
    )

    assert all(r.outcome == "applied" for r in results)
    order = Order.objects.get(pk=order.pk)
    assert order.captured_amount == Decimal("160.00")
    captures = PaymentTransaction.objects.filter(order=order, kind=TransactionKind.CAPTURE)
    assert order.captured_amount == sum(captures.values_list("amount", flat=True))
    assert order.status == S.PAID
    assert not order.needs_attention
    statuses = list(order.history.order_by("history_date").values_list("status", flat=True))
    assert statuses == [S.AWAITING_PAYMENT, S.AUTHORIZED, S.PARTIALLY_PAID, S.PAID]


@pytest.mark.parametrize("round_", range(6))
def test_capture_racing_override_leaves_an_explained_status(make_order, supervisor, round_):
    order = make_order(S.AUTHORIZED)

    capture, override = run_together(
        lambda: apply_gateway_event(order, event("captured", "100.00")),
        lambda: override_status(order, S.CANCELLED, user=supervisor, reason="customer called"),
    )

    assert not isinstance(capture, Exception)
    order = Order.objects.get(pk=order.pk)
    # The capture really happened: it is in the ledger exactly once, whoever won.
    assert order.captured_amount == Decimal("100.00")
    if isinstance(override, DiscouragedTransition):
        # Capture first: paid -> cancelled is discouraged and was refused.
        assert order.status == S.PAID
        assert not order.needs_attention
    else:
        assert not isinstance(override, Exception)
        # Override first: the capture is kept but cannot move a cancelled order.
        assert capture.outcome == "ignored"
        assert order.status == S.CANCELLED
        assert order.needs_attention
    changes = order.history.count()
    assert changes == 3  # placed, authorized, then exactly one of paid / cancelled


def test_refunds_racing_a_capture_never_overdraw(make_order):
    order = make_order(S.PARTIALLY_PAID, total="200.00")  # 100.00 captured

    jobs = [lambda: apply_gateway_event(order, event("captured", "100.00"))]
    jobs += [lambda: apply_gateway_event(order, event("refunded", "15.00")) for _ in range(15)]
    results = run_together(*jobs)

    assert not [r for r in results if isinstance(r, Exception)]
    order = Order.objects.get(pk=order.pk)
    # Whatever the order of arrival, refunds are recorded while the balance
    # allows (early ones once the capture lands): 13 x 15.00 <= 200.00.
    assert order.captured_amount == Decimal("200.00")
    assert order.refunded_amount == Decimal("195.00")
    ledger_refunds = PaymentTransaction.objects.filter(order=order, kind=TransactionKind.REFUND)
    assert ledger_refunds.count() == 13
    assert order.status == S.PARTIALLY_PAID
    # The two refunds beyond the balance stay out of the ledger, waiting,
    # and are the only reason the order needs attention.
    waiting = order.gateway_events.filter(outcome="ignored", deferred=True)
    assert waiting.count() == 2
    assert all("could not be applied" in reason for reason in order.attention_reasons)
