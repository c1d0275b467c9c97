"""Staff-initiated capture, void and refund through the gateway adapter."""

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.test import override_settings

from orders.models import PaymentStatus as S
from payments.exceptions import GatewayError, PaymentError
from payments.models import PaymentTransaction, TransactionKind
from payments.services import capture_payment, refund_payment, void_payment
from tests.factories import PaymentMethodFactory
from tests.payments.callbacks import body_for, post

pytestmark = pytest.mark.django_db


def ledger(order, kind):
    return list(
        PaymentTransaction.objects.filter(order=order, kind=kind).values_list("amount", flat=True)
    )


def test_capture_defaults_to_what_is_left_and_records_the_reference(make_order, cashier, client):
    order = make_order(S.AUTHORIZED)

    result = capture_payment(order, user=cashier)

    assert result.outcome == "applied"
    assert result.order.status == S.PAID
    row = result.transaction
    assert (row.amount, row.created_by, row.channel) == (Decimal("100.000"), cashier, "admin")
    history = result.order.history.first()
    assert (history.history_user, history.channel) == (cashier, "admin")
    # The gateway's own callback for the same capture is a duplicate.
    body = body_for(order.number, "payment.captured", amount="100.00", transaction=row.reference)
    assert post(client, body).json() == {"status": "duplicate"}
    assert ledger(order, TransactionKind.CAPTURE) == [Decimal("100.000")]


def test_partial_capture_then_the_rest(make_order, cashier):
    order = make_order(S.AUTHORIZED)

    first = capture_payment(order, amount="40.00", user=cashier)
    second = capture_payment(order, user=cashier)

    assert first.order.status == S.PARTIALLY_PAID
    assert second.order.status == S.PAID
    assert sorted(ledger(order, TransactionKind.CAPTURE)) == [Decimal("40.000"), Decimal("60.000")]


@pytest.mark.parametrize("amount", ["100.01", "0", "-1", "abc", "1.001"])
def test_capture_refuses_bad_amounts(make_order, cashier, amount):
    order = make_order(S.AUTHORIZED)

    with pytest.raises(PaymentError):
        capture_payment(order, amount=amount, user=cashier)
    assert ledger(order, TransactionKind.CAPTURE) == []


def test_capture_needs_an_authorized_order(make_order, cashier):
    with pytest.raises(PaymentError, match="Only an authorized payment"):
        capture_payment(make_order(S.AWAITING_PAYMENT), user=cashier)


def test_void_cancels_an_authorized_order(make_order, cashier):
    result = void_payment(make_order(S.AUTHORIZED), user=cashier)

    assert result.order.status == S.CANCELLED
    assert not result.order.needs_attention


def test_void_refuses_a_paid_order(make_order, cashier):
    with pytest.raises(PaymentError, match="Only an authorized, uncaptured payment"):
        void_payment(make_order(S.PAID), user=cashier)


def test_full_and_partial_refunds(make_order, cashier):
    order = make_order(S.PAID)

    partial = refund_payment(order, amount="30.00", user=cashier, reason="damaged box")
    rest = refund_payment(order, user=cashier, reason="returned")

    assert partial.order.status == S.PARTIALLY_PAID
    assert rest.order.status == S.REFUNDED
    assert rest.order.refunded_amount == Decimal("100.00")
    assert (
        "damaged box"
        in partial.order.history.filter(status=S.PARTIALLY_PAID).get().history_change_reason
    )


def test_refund_beyond_the_balance_is_refused(make_order, cashier):
    order = make_order(S.PAID)
    refund_payment(order, amount="90.00", user=cashier, reason="x")

    with pytest.raises(PaymentError, match=r"more than the 10\.00 USD that can be refunded"):
        refund_payment(order, amount="10.01", user=cashier, reason="x")
    assert ledger(order, TransactionKind.REFUND) == [Decimal("90.000")]


def test_refund_where_the_method_does_not_refund(make_order, cashier):
    method = PaymentMethodFactory(
        code="norefunds", supports_refunds=False, supports_partial_refunds=False
    )
    order = make_order(S.PAID, method=method)

    with pytest.raises(PaymentError, match="does not support refunds"):
        refund_payment(order, user=cashier, reason="x")


def test_partial_refund_where_only_full_refunds_are_supported(make_order, cashier):
    method = PaymentMethodFactory(code="fullonly", supports_partial_refunds=False)
    order = make_order(S.PAID, method=method)

    with pytest.raises(PaymentError, match="only refunds the whole balance"):
        refund_payment(order, amount="10.00", user=cashier, reason="x")
    assert refund_payment(order, user=cashier, reason="x").order.status == S.REFUNDED


def test_refund_needs_a_reason(make_order, cashier):
    with pytest.raises(PaymentError, match="reason is required"):
        refund_payment(make_order(S.PAID), user=cashier, reason="  ")


@pytest.mark.parametrize(
    ("action", "status"),
    [(capture_payment, S.AUTHORIZED), (void_payment, S.AUTHORIZED), (refund_payment, S.PAID)],
)
def test_money_actions_need_their_permission(make_order, staff_user, action, status):
    order = make_order(status)
    kwargs = {"reason": "x"} if action is refund_payment else {}

    with pytest.raises(PermissionDenied):
        action(order, user=staff_user, **kwargs)
    order.refresh_from_db()
    assert order.status == status


def test_offline_orders_have_no_gateway_to_call(make_order, offline_method, cashier):
    order = make_order(S.AWAITING_PAYMENT, method=offline_method)

    with pytest.raises(PaymentError, match="not an online gateway"):
        capture_payment(order, user=cashier)


@pytest.mark.parametrize("outcome", ["decline", "error"])
def test_gateway_refusal_records_nothing(make_order, cashier, outcome):
    order = make_order(S.PAID)

    with (
        override_settings(ORDERFLOW_HMAC_SIMULATED_OUTCOME=outcome),
        pytest.raises(GatewayError),
    ):
        refund_payment(order, amount="10.00", user=cashier, reason="x")

    order.refresh_from_db()
    assert order.refunded_amount == 0
    assert order.status == S.PAID
