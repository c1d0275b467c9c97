"""Staff clicks racing on one order: real threads on PostgreSQL, many trials."""

from decimal import Decimal

import pytest

from orders.models import Order
from orders.models import PaymentStatus as S
from payments.exceptions import GatewayError, PaymentError, RequestAlreadySubmitted
from payments.models import PaymentRequest, PaymentTransaction, RequestStatus, TransactionKind
from payments.services import new_request_token, refund_payment
from tests.payments.test_concurrency import run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TRIALS = 30


def split(results):
    done = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    return done, refused


@pytest.mark.parametrize("trial", range(TRIALS))
def test_same_token_clicked_from_racing_threads_moves_money_once(make_order, gateway_calls, trial):
    clicks = 2 + trial % 3  # 2, 3 or 4 threads
    # Every other trial the gateway takes a moment: later clicks then arrive
    # while the first is in flight, not only after it is recorded.
    gateway_calls.delay = 0.05 if trial % 2 else 0.0
    order = make_order(S.PAID)
    token = new_request_token()

    def click():
        return refund_payment(order, amount="10.00", user=None, reason="double click", token=token)

    done, refused = split(run_together(*[click] * clicks))

    assert [r.outcome for r in done] == ["applied"]
    assert len(refused) == clicks - 1
    assert all(isinstance(r, RequestAlreadySubmitted) for r in refused), refused
    request = PaymentRequest.objects.get(token=token)
    assert {r.request.pk for r in refused} == {request.pk}
    assert len(gateway_calls.calls) == 1
    assert request.status == RequestStatus.SUCCEEDED
    order = Order.objects.get(pk=order.pk)
    assert order.refunded_amount == Decimal("10.00")
    rows = PaymentTransaction.objects.filter(order=order, kind=TransactionKind.REFUND)
    assert list(rows.values_list("amount", flat=True)) == [Decimal("10.00")]
    assert request.transaction == rows.get()


AMOUNTS = [(None, None), ("100.00", "100.00"), ("60.00", "70.00")]
REFUSALS = (
    "is already being refunded by another request",
    "can be refunded",
    "Only a paid or partially paid order can be refunded",
)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_two_intents_racing_for_the_whole_balance_move_it_once(make_order, gateway_calls, trial):
    amounts = AMOUNTS[trial % len(AMOUNTS)]
    gateway_calls.delay = 0.05 if trial % 2 else 0.0
    order = make_order(S.PAID)

    results = run_together(
        *[
            lambda amount=amount: refund_payment(
                order, amount=amount, user=None, reason="two staff", token=new_request_token()
            )
            for amount in amounts
        ]
    )

    [done], [refused] = split(results)
    assert done.outcome == "applied"
    assert isinstance(refused, PaymentError)
    assert not isinstance(refused, RequestAlreadySubmitted | GatewayError)
    assert any(text in str(refused) for text in REFUSALS), refused
    assert len(gateway_calls.calls) == 1
    order = Order.objects.get(pk=order.pk)
    rows = PaymentTransaction.objects.filter(order=order, kind=TransactionKind.REFUND)
    assert list(rows.values_list("amount", flat=True)) == [done.transaction.amount]
    assert order.refunded_amount == done.transaction.amount
    assert list(PaymentRequest.objects.values_list("status", flat=True)) == ["succeeded"]
    assert not order.needs_attention
