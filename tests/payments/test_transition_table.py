"""Sections 5 and 5a: every (status, gateway fact) pair: applied, stale or ignored."""

from decimal import Decimal

import pytest

from orders.models import PaymentStatus as S
from payments.models import EventOutcome, PaymentTransaction, TransactionKind
from payments.services import apply_gateway_event
from tests.factories import event

ALL_EVENTS = ["authorized", "captured", "declined", "voided", "refunded"]

# (status, event) -> status after the event. Money events use the full amount
# here; partial amounts are tested below.
ALLOWED = {
    (S.AWAITING_PAYMENT, "authorized"): S.AUTHORIZED,
    (S.AWAITING_PAYMENT, "captured"): S.PAID,
    (S.AUTHORIZED, "captured"): S.PAID,
    (S.PARTIALLY_PAID, "captured"): S.PAID,
    (S.AWAITING_PAYMENT, "declined"): S.DECLINED,
    (S.AUTHORIZED, "declined"): S.DECLINED,
    (S.AUTHORIZED, "voided"): S.CANCELLED,
    (S.PAID, "refunded"): S.REFUNDED,
    (S.PARTIALLY_PAID, "refunded"): S.REFUNDED,
    # 5a: a decline is not final; the customer may retry and pay.
    (S.DECLINED, "authorized"): S.AUTHORIZED,
    (S.DECLINED, "captured"): S.PAID,
    # 5a: a checkout abandoned before any authorization is cancelled, no void.
    (S.AWAITING_PAYMENT, "voided"): S.CANCELLED,
    (S.DECLINED, "voided"): S.CANCELLED,
}
# 5a: older than what the order knows (money captured, or the gateway already
# cancelled the payment): changes nothing, records nothing, needs nobody.
STALE = {
    (status, kind)
    for status in (S.PARTIALLY_PAID, S.PAID, S.REFUNDED, S.CANCELLED)
    for kind in ("authorized", "declined", "voided")
}

PAIRS = [(status, kind) for status in S.values for kind in ALL_EVENTS]


def same_payment(order) -> str | None:
    """The held authorization's reference: a decline then concerns that payment."""
    return (
        order.transactions.filter(kind=TransactionKind.AUTHORIZATION)
        .values_list("reference", flat=True)
        .first()
    )


def amount_for(order, kind):
    if kind == "captured":
        return (order.total - order.net_paid_amount) or Decimal("10.00")
    if kind == "refunded":
        return order.net_paid_amount or Decimal("10.00")
    return None


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "kind"), [p for p in PAIRS if p in ALLOWED])
def test_allowed_event_moves_status(make_order, status, kind):
    order = make_order(status)

    result = apply_gateway_event(order, event(kind, amount_for(order, kind), same_payment(order)))

    assert result.outcome == EventOutcome.APPLIED
    assert result.order.status == ALLOWED[(status, kind)]
    assert not result.order.needs_attention


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "kind"), [p for p in PAIRS if p in STALE])
def test_stale_event_changes_nothing_and_needs_nobody(make_order, status, kind):
    order = make_order(status)
    ledger_before = PaymentTransaction.objects.filter(order=order).count()
    history_before = order.history.count()

    result = apply_gateway_event(order, event(kind))

    order.refresh_from_db()
    assert result.outcome == EventOutcome.STALE
    assert result.reason
    assert order.status == status
    assert order.history.count() == history_before
    assert PaymentTransaction.objects.filter(order=order).count() == ledger_before
    assert not order.needs_attention


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "kind"), [p for p in PAIRS if p not in ALLOWED and p not in STALE]
)
def test_event_not_allowed_keeps_status_and_flags_order(make_order, status, kind):
    order = make_order(status)
    ledger_before = PaymentTransaction.objects.filter(order=order).count()
    history_before = order.history.count()
    net_before = order.net_paid_amount

    result = apply_gateway_event(order, event(kind, amount_for(order, kind)))

    order.refresh_from_db()
    assert result.outcome == EventOutcome.IGNORED
    assert result.reason
    assert order.status == status
    assert order.history.count() == history_before
    assert order.needs_attention
    assert any("could not be applied" in r for r in order.attention_reasons)
    if kind == "refunded" and net_before == 0:
        # Beyond the refundable balance: kept out of the ledger.
        assert PaymentTransaction.objects.filter(order=order).count() == ledger_before
    else:
        # What really happened at the gateway is still recorded.
        assert PaymentTransaction.objects.filter(order=order).count() == ledger_before + 1


@pytest.mark.django_db
def test_decline_of_another_attempt_after_an_authorization_is_stale(make_order):
    order = make_order(S.AUTHORIZED)

    result = apply_gateway_event(order, event("declined", reference="earlier_attempt"))

    assert result.outcome == EventOutcome.STALE
    assert result.order.status == S.AUTHORIZED
    assert not result.order.needs_attention


@pytest.mark.django_db
def test_partial_capture_from_awaiting_is_partially_paid(make_order):
    order = make_order(S.AWAITING_PAYMENT)

    result = apply_gateway_event(order, event("captured", "30.00"))

    assert result.order.status == S.PARTIALLY_PAID
    assert result.order.net_paid_amount == Decimal("30.00")


@pytest.mark.django_db
def test_partial_capture_from_authorized_is_partially_paid(make_order):
    order = make_order(S.AUTHORIZED)

    result = apply_gateway_event(order, event("captured", "99.99"))

    assert result.order.status == S.PARTIALLY_PAID


@pytest.mark.django_db
def test_partial_refund_of_paid_order_is_partially_paid(make_order):
    order = make_order(S.PAID)

    result = apply_gateway_event(order, event("refunded", "0.01"))

    assert result.order.status == S.PARTIALLY_PAID
    assert result.order.net_paid_amount == Decimal("99.99")
    assert not result.order.needs_attention


@pytest.mark.django_db
def test_refund_reported_after_override_is_recorded_but_ignored(make_order, supervisor):
    from orders.services import override_status

    order = make_order(S.PAID)
    order = override_status(
        order, S.CANCELLED, user=supervisor, reason="customer called", allow_discouraged=True
    )

    result = apply_gateway_event(order, event("refunded", "100.00"))

    assert result.outcome == EventOutcome.IGNORED
    assert result.order.status == S.CANCELLED
    assert result.order.refunded_amount == Decimal("100.00")
    assert PaymentTransaction.objects.filter(order=order, kind=TransactionKind.REFUND).count() == 1
