"""
Section 5a through the callback view: what gateways really do.

Each lifecycle is played in every order its callbacks can arrive in, then
delivered again: the final status, ledger and attention must not depend on
the order, and redeliveries must change nothing.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from django.utils import timezone

from orders.models import DisputeStatus, Order
from orders.models import PaymentStatus as S
from payments.inbox import acknowledge_events
from payments.models import EventOutcome, GatewayEvent, PaymentTransaction
from payments.services import capture_payment
from tests.payments.callbacks import body_for, post

pytestmark = pytest.mark.django_db

# Callbacks of one lifecycle: (type, amount, transaction).
LIFECYCLES = {
    "declined, retried, paid": (
        [("payment.declined", None, "pay_1"), ("payment.captured", "100.00", "pay_1")],
        {"status": S.PAID, "captured": "100", "refunded": "0", "attention": False},
    ),
    "authorized, then voided": (
        [("payment.authorized", None, "pay_1"), ("payment.voided", None, "pay_1")],
        {"status": S.CANCELLED, "captured": "0", "refunded": "0", "attention": False},
    ),
    "checkout abandoned": (
        [("payment.voided", None, "pay_1")],
        {"status": S.CANCELLED, "captured": "0", "refunded": "0", "attention": False},
    ),
    "authorization delivered with its capture": (
        [("payment.authorized", None, "pay_1"), ("payment.captured", "100.00", "pay_1")],
        {"status": S.PAID, "captured": "100", "refunded": "0", "attention": False},
    ),
    "refund reported, then failed": (
        [
            ("payment.captured", "100.00", "pay_1"),
            ("payment.refunded", "100.00", "re_1"),
            ("payment.refund_failed", None, "re_1"),
        ],
        {"status": S.PAID, "captured": "100", "refunded": "0", "attention": False},
    ),
    "pending partial refund that failed": (
        [
            ("payment.captured", "100.00", "pay_1"),
            ("payment.refunded", "30.00", "re_1"),
            ("payment.refund_failed", None, "re_1"),
        ],
        {"status": S.PAID, "captured": "100", "refunded": "0", "attention": False},
    ),
    "dispute won": (
        [
            ("payment.captured", "100.00", "pay_1"),
            ("payment.disputed", "100.00", "dp_1"),
            ("payment.dispute_won", "100.00", "dp_1"),
        ],
        {
            "status": S.PAID,
            "captured": "100",
            "refunded": "0",
            "disputed": "0",
            "dispute": DisputeStatus.WON,
            "attention": False,
        },
    ),
    "dispute lost": (
        [
            ("payment.captured", "100.00", "pay_1"),
            ("payment.disputed", "100.00", "dp_1"),
            ("payment.dispute_lost", None, "dp_1"),
        ],
        {
            "status": S.PAID,
            "captured": "100",
            "refunded": "0",
            "disputed": "100",
            "dispute": DisputeStatus.LOST,
            "attention": True,
        },
    ),
}

CASES = [
    (name, order_of_delivery)
    for name, (steps, _expected) in LIFECYCLES.items()
    for order_of_delivery in itertools.permutations(range(len(steps)))
]


def deliver(client, order: Order, steps, sequence, *, prefix: str) -> list[int]:
    answers = []
    for position in sequence:
        kind, amount, transaction = steps[position]
        body = body_for(
            order.number,
            kind,
            amount=amount,
            transaction=transaction,
            event_id=f"{prefix}-{position}",
        )
        answers.append(post(client, body).status_code)
    return answers


@pytest.mark.parametrize(("name", "sequence"), CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_lifecycle_ends_the_same_in_any_delivery_order(client, make_order, name, sequence):
    steps, expected = LIFECYCLES[name]
    order = make_order(S.AWAITING_PAYMENT)

    answers = deliver(client, order, steps, sequence, prefix="evt")
    ledger_after = sorted(order.transactions.values_list("kind", "reference", "amount"))
    history_after = order.history.count()
    again = deliver(client, order, steps, sequence, prefix="evt")  # redelivered

    order = Order.objects.get(pk=order.pk)
    assert set(answers) == {200}, answers
    assert set(again) == {200}, again
    assert order.status == expected["status"]
    assert order.captured_amount == Decimal(expected["captured"])
    assert order.refunded_amount == Decimal(expected["refunded"])
    assert order.disputed_amount == Decimal(expected.get("disputed", "0"))
    assert order.dispute_status == expected.get("dispute", "")
    assert order.needs_attention == expected["attention"], order.attention_reasons
    assert sorted(order.transactions.values_list("kind", "reference", "amount")) == ledger_after
    assert order.history.count() == history_after
    assert not GatewayEvent.objects.filter(order=order, deferred=True).exists()


def test_abandoned_checkout_writes_no_void(client, make_order):
    order = make_order(S.AWAITING_PAYMENT)

    post(client, body_for(order.number, "payment.voided", transaction="pay_1"))

    assert not order.transactions.filter(kind="void").exists()


def test_failed_refund_is_a_reversal_row_and_a_gateway_status_change(client, make_order):
    order = make_order(S.PAID)
    post(client, body_for(order.number, "payment.refunded", amount="100.00", transaction="re_9"))

    response = post(client, body_for(order.number, "payment.refund_failed", transaction="re_9"))

    assert response.json() == {"status": "applied", "order_status": "paid"}
    rows = sorted(order.transactions.filter(reference="re_9").values_list("kind", "amount"))
    assert rows == [("refund", Decimal("100.000")), ("refund_reversal", Decimal("100.000"))]
    last = order.history.first()
    assert (last.status, last.channel, last.history_user) == (S.PAID, "gateway", None)
    assert "Refund failed" in last.history_change_reason


def test_lost_dispute_stays_flagged_until_acknowledged(client, make_order):
    order = make_order(S.PAID)
    post(client, body_for(order.number, "payment.disputed", amount="60.00", transaction="dp_1"))
    order.refresh_from_db()
    assert order.needs_attention
    assert any("disputed the payment" in r for r in order.attention_reasons)
    assert order.kept_amount == Decimal("40.00")

    post(client, body_for(order.number, "payment.dispute_lost", transaction="dp_1"))
    order.refresh_from_db()
    assert any("dispute was lost" in r for r in order.attention_reasons)

    acknowledge_events(GatewayEvent.objects.filter(order=order, kind="dispute_lost"), user=None)
    order.refresh_from_db()
    assert not order.needs_attention, order.attention_reasons
    assert order.status == S.PAID


def test_same_reference_with_another_amount_is_a_conflict(client, make_order):
    order = make_order(S.AUTHORIZED)
    post(client, body_for(order.number, "payment.captured", amount="40.00", transaction="tx_7"))

    response = post(
        client, body_for(order.number, "payment.captured", amount="100.00", transaction="tx_7")
    )

    assert response.json()["status"] == "conflict"
    assert "40.00 USD" in response.json()["reason"]
    order.refresh_from_db()
    assert order.captured_amount == Decimal("40.00")
    assert order.needs_attention
    assert GatewayEvent.objects.filter(order=order, outcome=EventOutcome.CONFLICT).count() == 1


def test_stale_authorization_is_answered_stale(client, make_order):
    order = make_order(S.PAID)

    response = post(client, body_for(order.number, "payment.authorized", transaction="pay_x"))

    assert response.json() == {"status": "stale"}
    assert GatewayEvent.objects.get(reference="pay_x").outcome == EventOutcome.STALE


def test_authorization_after_staff_cancelled_still_flags_the_held_money(
    client, make_order, supervisor
):
    from orders.services import override_status

    order = override_status(
        make_order(S.AWAITING_PAYMENT), S.CANCELLED, user=supervisor, reason="customer left"
    )

    response = post(client, body_for(order.number, "payment.authorized", transaction="pay_h"))

    assert response.json()["status"] == "ignored"
    order.refresh_from_db()
    assert order.needs_attention


def test_refund_waiting_for_its_capture_is_recorded_under_the_gateways_name(
    client, make_order, django_user_model
):
    from django.contrib.auth.models import Permission

    clerk = django_user_model.objects.create_user(username="capturer", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="capture_payment"))
    clerk = django_user_model.objects.get(pk=clerk.pk)
    order = make_order(S.AUTHORIZED)
    post(client, body_for(order.number, "payment.refunded", amount="30.00", transaction="re_w"))

    capture_payment(order, user=clerk)

    refund = PaymentTransaction.objects.get(order=order, kind="refund")
    assert (refund.channel, refund.created_by) == ("gateway", None)
    record = order.history.filter(status=S.PARTIALLY_PAID).get()
    assert (record.channel, record.history_user) == ("gateway", None)
    assert "recorded once the capture arrived" in record.history_change_reason


def test_acknowledged_waiting_refund_stays_out_of_the_ledger(client, make_order):
    order = make_order(S.AUTHORIZED)
    post(client, body_for(order.number, "payment.refunded", amount="30.00", transaction="re_a"))
    waiting = GatewayEvent.objects.get(reference="re_a")
    GatewayEvent.objects.filter(pk=waiting.pk).update(acknowledged_at=timezone.now())

    post(client, body_for(order.number, "payment.captured", amount="100.00", transaction="pay"))

    order.refresh_from_db()
    assert order.refunded_amount == 0
    assert order.status == S.PAID
    assert not PaymentTransaction.objects.filter(order=order, kind="refund").exists()


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("payment.refund_failed", "missing field: transaction"),
        ("payment.dispute_lost", "missing field: transaction"),
        ("payment.disputed", "missing field: transaction"),
    ],
)
def test_new_hmac_types_need_the_reference_they_are_about(client, make_order, kind, problem):
    order = make_order(S.PAID)
    amount = "10.00" if kind == "payment.disputed" else None

    response = post(client, body_for(order.number, kind, amount=amount, transaction=""))

    assert response.status_code == 400
    assert problem in response.json()["error"]


def test_refund_failure_naming_another_orders_refund_is_a_conflict(client, make_order):
    first, second = make_order(S.PAID), make_order(S.PAID)
    post(client, body_for(first.number, "payment.refunded", amount="30.00", transaction="re_a"))
    post(client, body_for(second.number, "payment.refunded", amount="50.00", transaction="re_b"))

    response = post(client, body_for(second.number, "payment.refund_failed", transaction="re_a"))

    assert response.json()["status"] == "conflict"
    assert first.number in response.json()["reason"]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.refunded_amount, second.refunded_amount) == (Decimal("30"), Decimal("50"))
    assert not PaymentTransaction.objects.filter(kind="refund_reversal").exists()
    assert second.needs_attention
    # The first order's own failure is still applied when it comes.
    post(client, body_for(first.number, "payment.refund_failed", transaction="re_a"))
    first.refresh_from_db()
    assert first.refunded_amount == 0


def test_a_second_dispute_after_the_first_closed_opens_again(client, make_order):
    order = make_order(S.PAID)
    post(client, body_for(order.number, "payment.disputed", amount="100.00", transaction="du1"))
    post(client, body_for(order.number, "payment.dispute_won", amount="100.00", transaction="du1"))

    post(client, body_for(order.number, "payment.disputed", amount="100.00", transaction="du2"))

    order.refresh_from_db()
    assert order.dispute_status == DisputeStatus.OPEN
    assert order.disputed_amount == Decimal("100")
    assert order.needs_attention
