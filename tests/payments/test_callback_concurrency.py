"""Section 11 through the callback view: real threads on PostgreSQL."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import Client

from orderflow.audit import Channel, audit_context
from orders.models import Order
from orders.models import PaymentStatus as S
from orders.services import override_status
from payments.exceptions import RequestAlreadySubmitted
from payments.models import GatewayEvent, PaymentTransaction, TransactionKind
from payments.services import new_request_token, refund_payment
from tests.payments.callbacks import body_for, post
from tests.payments.test_concurrency import run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_same_event_from_16_threads_counts_once(make_order):
    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00")

    answers = run_together(*[lambda: post(Client(), body).json()] * 16)

    assert sorted(a["status"] for a in answers) == ["applied"] + ["duplicate"] * 15
    order = Order.objects.get(pk=order.pk)
    assert order.status == S.PAID
    assert PaymentTransaction.objects.filter(order=order, kind=TransactionKind.CAPTURE).count() == 1
    assert order.history.filter(status=S.PAID).count() == 1
    assert GatewayEvent.objects.filter(order=order).count() == 1


def test_capture_and_15_refunds_racing_end_at_net_25(make_order):
    order = make_order(S.AWAITING_PAYMENT)
    capture = body_for(order.number, "payment.captured", amount="100.00")
    refunds = [body_for(order.number, "payment.refunded", amount="5.00") for _ in range(15)]

    answers = run_together(
        lambda: post(Client(), capture), *[lambda b=b: post(Client(), b) for b in refunds]
    )

    assert all(a.status_code == 200 for a in answers)
    order = Order.objects.get(pk=order.pk)
    assert order.net_paid_amount == Decimal("25.00")
    assert order.status == S.PARTIALLY_PAID
    assert PaymentTransaction.objects.filter(order=order).count() == 16
    assert not order.needs_attention


def test_a_callback_is_stored_while_staff_hold_the_order(make_order):
    # Storing the event refers to the order (a foreign key check); a staff
    # action holding the order's lock must not make the gateway wait for
    # the stored-first write, only for the processing after it.
    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00")
    locked, release = threading.Event(), threading.Event()
    stored_while_locked = []

    def staff():
        with transaction.atomic():
            Order.objects.lock(order)
            locked.set()
            release.wait(timeout=30)

    def gateway():
        locked.wait(timeout=30)
        return post(Client(), body)

    def watcher():
        locked.wait(timeout=30)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not stored_while_locked:
            if GatewayEvent.objects.filter(order=order).exists():
                stored_while_locked.append(True)
            time.sleep(0.05)
        release.set()

    _, answer, _ = run_together(staff, gateway, watcher)

    assert stored_while_locked, "the event waited for the order's lock before it was stored"
    assert answer.status_code == 200 and answer.json()["status"] == "applied"
    assert Order.objects.get(pk=order.pk).status == S.PAID


def admin_override(order, user):
    # What the admin's override does: the service inside the admin channel.
    with audit_context(channel=Channel.ADMIN, user=user):
        return override_status(order, S.CANCELLED, user=user, reason="customer called")


@pytest.mark.parametrize("round_", range(4))
def test_callback_racing_an_admin_override_loses_neither(make_order, supervisor, round_):
    order = make_order(S.AWAITING_PAYMENT)
    body = body_for(order.number, "payment.authorized", transaction="pi_race")

    answer, overridden = run_together(
        lambda: post(Client(), body),
        lambda: admin_override(order, supervisor),
    )

    assert answer.status_code == 200
    assert not isinstance(overridden, Exception)
    order = Order.objects.get(pk=order.pk)
    history = list(order.history.order_by("history_date").values_list("status", "channel"))
    # Both writes are in the history, in one order or the other.
    assert (S.CANCELLED, "admin") in history
    assert order.transactions.filter(kind=TransactionKind.AUTHORIZATION).count() == 1
    if answer.json()["status"] == "applied":
        assert history[-2:] == [(S.AUTHORIZED, "gateway"), (S.CANCELLED, "admin")]
    else:
        assert answer.json()["status"] == "ignored"
        assert history[-1] == (S.CANCELLED, "admin")
    assert order.status == S.CANCELLED


def test_double_clicked_refund_moves_money_once(make_order, gateway_calls):
    order = make_order(S.PAID)
    token = new_request_token()  # issued with the form; both clicks submit it

    results = run_together(
        *[
            lambda: refund_payment(
                order, amount="10.00", user=None, reason="double click", token=token
            )
        ]
        * 2
    )

    assert [r.outcome for r in results if not isinstance(r, Exception)] == ["applied"]
    assert [type(r) for r in results if isinstance(r, Exception)] == [RequestAlreadySubmitted]
    assert len(gateway_calls.calls) == 1
    order = Order.objects.get(pk=order.pk)
    assert order.refunded_amount == Decimal("10.00")
