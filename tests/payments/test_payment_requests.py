"""Staff money actions are payment requests: recorded first, sent once, recoverable."""

import threading
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, connections, transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

import payments.services
import payments.staff_actions
from orders.models import Order
from orders.models import PaymentStatus as S
from payments import requests as payment_requests
from payments.exceptions import (
    GatewayError,
    InvalidPaymentEvent,
    PaymentError,
    RequestAlreadySubmitted,
)
from payments.gateways.base import OutboundResult
from payments.gateways.hmac import HmacGateway
from payments.models import (
    PaymentRequest,
    PaymentTransaction,
    RecordIsAppendOnly,
    RequestAction,
    RequestStatus,
    TransactionKind,
)
from payments.services import (
    capture_payment,
    new_request_token,
    recover_payment_requests,
    refund_payment,
    void_payment,
)
from tests.payments.callbacks import body_for, post

pytestmark = pytest.mark.django_db


def refunds(order) -> list[tuple[str, Decimal]]:
    rows = PaymentTransaction.objects.filter(order=order, kind=TransactionKind.REFUND)
    return list(rows.order_by("id").values_list("reference", "amount"))


def reload(order) -> Order:
    return Order.objects.get(pk=order.pk)


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def backdate(request: PaymentRequest, minutes: int) -> None:
    PaymentRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes)
    )


@pytest.fixture
def apply_crashes_once(monkeypatch):
    """The process dies after the gateway answered, before the ledger write."""
    original = payments.staff_actions.apply_fact
    crashes = []

    def crash_once(*args, **kwargs):
        if not crashes:
            crashes.append(True)
            raise RuntimeError("worker killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(payments.staff_actions, "apply_fact", crash_once)
    return crashes


@pytest.fixture
def answer_lost(monkeypatch, gateway_calls):
    """The gateway refunds, then the connection drops before its answer is stored."""
    state = {"lost": 1}
    answered = HmacGateway.refund  # the counting wrapper

    def refund(self, request, *, credentials):
        result = answered(self, request, credentials=credentials)
        if state["lost"]:
            state["lost"] -= 1
            raise ConnectionResetError("connection reset by peer")
        return result

    monkeypatch.setattr(HmacGateway, "refund", refund)
    return state


# -- the same intent, sent again ----------------------------------------------------------


ACTIONS = {
    "capture": (S.AUTHORIZED, lambda order, **kw: capture_payment(order, user=None, **kw)),
    "void": (S.AUTHORIZED, lambda order, **kw: void_payment(order, user=None, **kw)),
    "refund": (
        S.PAID,
        lambda order, **kw: refund_payment(order, amount="10.00", user=None, reason="x", **kw),
    ),
}


@pytest.mark.parametrize("action", ACTIONS)
def test_reused_token_after_completion_never_calls_the_gateway_again(
    make_order, gateway_calls, action
):
    status, act = ACTIONS[action]
    order = make_order(status)
    token = new_request_token()
    first = act(order, token=token)
    status_after = reload(order).status
    ledger_after = PaymentTransaction.objects.filter(order=order).count()

    with pytest.raises(RequestAlreadySubmitted) as caught:
        act(order, token=token)

    assert len(gateway_calls.calls) == 1
    assert caught.value.request == PaymentRequest.objects.get(token=token)
    assert caught.value.request.transaction == first.transaction
    message = str(caught.value)
    assert "already submitted" in message
    assert "it succeeded" in message
    assert order.number in message
    assert reload(order).status == status_after
    assert PaymentTransaction.objects.filter(order=order).count() == ledger_after


def test_reused_token_is_recognised_after_the_order_moved_on(make_order, gateway_calls):
    order = make_order(S.PAID)
    token = new_request_token()
    refund_payment(order, amount="10.00", user=None, reason="damaged", token=token)
    refund_payment(order, user=None, reason="returned the rest")
    assert reload(order).status == S.REFUNDED

    # The form of the first refund, sent again: not "a refunded order cannot be refunded".
    with pytest.raises(RequestAlreadySubmitted, match="already submitted"):
        refund_payment(order, amount="10.00", user=None, reason="damaged", token=token)
    with pytest.raises(RequestAlreadySubmitted):
        refund_payment(order, user=None, reason="damaged", token=token)

    assert len(gateway_calls.calls) == 2
    assert [amount for _ref, amount in refunds(order)] == [Decimal("10.00"), Decimal("90.00")]


def refund_elsewhere(first, paid, authorized, token):
    return refund_payment(paid, amount="10.00", user=None, reason="x", token=token)


def refund_another_amount(first, paid, authorized, token):
    return refund_payment(first, amount="20.00", user=None, reason="x", token=token)


def capture_instead(first, paid, authorized, token):
    return capture_payment(authorized, amount="10.00", user=None, token=token)


@pytest.mark.parametrize("reuse", [refund_another_amount, refund_elsewhere, capture_instead])
def test_token_reused_for_another_request_is_refused(make_order, gateway_calls, reuse):
    first, paid, authorized = make_order(S.PAID), make_order(S.PAID), make_order(S.AUTHORIZED)
    token = new_request_token()
    refund_payment(first, amount="10.00", user=None, reason="x", token=token)

    with pytest.raises(PaymentError, match="already used for another request") as caught:
        reuse(first, paid, authorized, token)

    assert not isinstance(caught.value, RequestAlreadySubmitted)
    assert f"the refund of 10.00 USD on order {first.number}" in str(caught.value)
    assert len(gateway_calls.calls) == 1
    assert PaymentRequest.objects.count() == 1
    assert reload(first).refunded_amount == Decimal("10.00")
    assert (reload(paid).status, reload(authorized).status) == (S.PAID, S.AUTHORIZED)


@pytest.mark.parametrize("token", ["", "short", "x" * 65, "spaces are not ok here", 42])
def test_malformed_token_is_refused_before_anything_is_recorded(make_order, gateway_calls, token):
    with pytest.raises(PaymentError, match="token is not valid"):
        refund_payment(make_order(S.PAID), amount="10.00", user=None, reason="x", token=token)

    assert gateway_calls.calls == []
    assert not PaymentRequest.objects.exists()


def test_each_call_without_a_token_is_a_new_intent(make_order, gateway_calls):
    order = make_order(S.PAID)

    refund_payment(order, amount="10.00", user=None, reason="x")
    refund_payment(order, amount="10.00", user=None, reason="x")

    keys = gateway_calls.keys("refund")
    assert len(set(keys)) == 2
    assert reload(order).refunded_amount == Decimal("20.00")


# -- a refusal, and what is recorded when --------------------------------------------------


def test_gateway_refusal_fails_the_request_and_a_new_token_can_retry(
    make_order, cashier, gateway_calls
):
    order = make_order(S.PAID)
    token = new_request_token()

    with (
        override_settings(ORDERFLOW_HMAC_SIMULATED_OUTCOME="decline"),
        pytest.raises(GatewayError, match="declined"),
    ):
        refund_payment(order, amount="10.00", user=cashier, reason="x", token=token)

    failed = PaymentRequest.objects.get(token=token)
    assert failed.status == RequestStatus.FAILED
    assert "declined" in failed.detail
    assert failed.transaction is None
    assert failed.completed_at is not None
    assert (failed.requested_by, failed.channel) == (cashier, "admin")
    assert refunds(order) == []
    # The same form again is told it failed, and nothing is sent.
    with pytest.raises(RequestAlreadySubmitted, match="it failed: The test gateway declined"):
        refund_payment(order, amount="10.00", user=cashier, reason="x", token=token)
    assert len(gateway_calls.calls) == 1

    retry = refund_payment(order, user=cashier, reason="x", token=new_request_token())

    assert retry.order.status == S.REFUNDED  # the failed request held nothing back
    assert len(gateway_calls.calls) == 2


@pytest.mark.django_db(transaction=True)
def test_request_is_committed_before_the_gateway_is_called(make_order, monkeypatch):
    order = make_order(S.PAID)
    token = new_request_token()
    seen = {}

    def read_from_another_connection():
        try:
            seen["other"] = list(PaymentRequest.objects.filter(token=token).values("status"))
        finally:
            connections.close_all()

    answer = HmacGateway.refund

    def refund(self, request, *, credentials):
        seen["open transaction"] = connection.in_atomic_block
        reader = threading.Thread(target=read_from_another_connection)
        reader.start()
        reader.join(timeout=10)
        return answer(self, request, credentials=credentials)

    monkeypatch.setattr(HmacGateway, "refund", refund)

    refund_payment(order, amount="10.00", user=None, reason="x", token=token)

    assert seen == {"open transaction": False, "other": [{"status": RequestStatus.PENDING}]}
    assert PaymentRequest.objects.get(token=token).status == RequestStatus.SUCCEEDED


def test_succeeded_request_names_its_ledger_entry_and_answer(make_order, cashier):
    order = make_order(S.PAID)

    result = refund_payment(order, amount="10.00", user=cashier, reason="damaged box")

    request = PaymentRequest.objects.get(order=order)
    assert request.status == RequestStatus.SUCCEEDED
    assert request.transaction == result.transaction
    assert (request.action, request.amount, request.currency) == ("refund", Decimal("10"), "USD")
    assert request.answer_reference == result.transaction.reference
    assert request.answer_amount == Decimal("10.00")
    assert request.answered_at <= request.completed_at
    capture = PaymentTransaction.objects.get(order=order, kind=TransactionKind.CAPTURE)
    assert request.checkout_reference == capture.reference
    assert (request.requested_by, request.channel, request.reason) == (
        cashier,
        "admin",
        "damaged box",
    )


def test_answer_without_a_reference_keeps_the_request_pending(make_order, monkeypatch):
    order = make_order(S.PAID)
    monkeypatch.setattr(
        HmacGateway,
        "refund",
        lambda self, request, *, credentials: OutboundResult(reference="", amount=request.amount),
    )

    with pytest.raises(InvalidPaymentEvent, match="no reference"):
        refund_payment(order, amount="10.00", user=None, reason="x")

    request = PaymentRequest.objects.get()
    assert (request.status, request.answered_at) == (RequestStatus.PENDING, None)
    assert "no reference" in request.detail
    assert refunds(order) == []


# -- intents racing for one balance ----------------------------------------------------------


def test_money_in_flight_is_not_offered_to_another_request(
    make_order, gateway_calls, apply_crashes_once
):
    order = make_order(S.PAID)
    with pytest.raises(RuntimeError):
        refund_payment(order, amount="60.00", user=None, reason="first")

    with pytest.raises(PaymentError, match=r"60\.00 USD of order .* is already being refunded"):
        refund_payment(order, amount="50.00", user=None, reason="second")
    rest = refund_payment(order, user=None, reason="the rest")

    assert rest.transaction.amount == Decimal("40.00")
    assert len(gateway_calls.calls) == 2
    recover_payment_requests(older_than=timedelta(0))
    order = reload(order)
    assert order.refunded_amount == Decimal("100.00")
    assert order.status == S.REFUNDED


def test_a_void_in_flight_blocks_a_second_void(make_order, monkeypatch):
    order = make_order(S.AUTHORIZED)

    def no_answer(self, request, *, credentials):
        raise TimeoutError("read timed out")

    monkeypatch.setattr(HmacGateway, "void", no_answer)
    with pytest.raises(TimeoutError):
        void_payment(order, user=None)

    with pytest.raises(PaymentError, match="already being voided"):
        void_payment(order, user=None)
    assert PaymentRequest.objects.get().detail.startswith("The gateway call did not finish")


# -- recovery -----------------------------------------------------------------------------


def test_crash_after_the_answer_is_recovered_from_the_stored_answer(
    make_order, gateway_calls, apply_crashes_once
):
    order = make_order(S.PAID)
    token = new_request_token()

    with pytest.raises(RuntimeError, match="worker killed"):
        refund_payment(order, amount="10.00", user=None, reason="damaged box", token=token)

    request = PaymentRequest.objects.get(token=token)
    assert request.status == RequestStatus.PENDING
    assert request.answer_reference
    assert request.answer_amount == Decimal("10.00")
    assert request.answered_at is not None
    assert refunds(order) == []
    with pytest.raises(RequestAlreadySubmitted, match="still in progress"):
        refund_payment(order, amount="10.00", user=None, reason="damaged box", token=token)

    summary = recover_payment_requests(older_than=timedelta(0))

    assert [(r.request.pk, r.status) for r in summary.requests] == [
        (request.pk, RequestStatus.SUCCEEDED)
    ]
    assert "stored answer" in summary.requests[0].done
    assert len(gateway_calls.calls) == 1  # not asked again
    assert refunds(order) == [(request.answer_reference, Decimal("10.00"))]
    request.refresh_from_db()
    assert request.status == RequestStatus.SUCCEEDED
    assert request.transaction.reference == request.answer_reference
    order = reload(order)
    assert (order.status, order.refunded_amount) == (S.PARTIALLY_PAID, Decimal("10.00"))
    record = order.history.first()
    assert record.channel == "system"
    assert f"Payment request {request.pk} (refund) recovered: damaged box" in (
        record.history_change_reason
    )
    # Once recovered, nothing is left to do, and nothing is recorded twice.
    assert recover_payment_requests(older_than=timedelta(0)).requests == ()
    assert len(refunds(order)) == 1


def test_crash_before_the_answer_is_stored_asks_again_with_the_same_key(
    make_order, gateway_calls, answer_lost
):
    order = make_order(S.PAID)
    token = new_request_token()

    with pytest.raises(ConnectionResetError):
        refund_payment(order, amount="10.00", user=None, reason="damaged box", token=token)

    request = PaymentRequest.objects.get(token=token)
    assert (request.status, request.answered_at) == (RequestStatus.PENDING, None)
    assert "ConnectionResetError" in request.detail
    assert refunds(order) == []

    summary = recover_payment_requests(older_than=timedelta(0))

    assert [r.status for r in summary.requests] == [RequestStatus.SUCCEEDED]
    assert gateway_calls.keys("refund") == [request.idempotency_key] * 2
    [(reference, amount)] = refunds(order)
    assert amount == Decimal("10.00")
    request.refresh_from_db()
    assert (request.status, request.answer_reference) == (RequestStatus.SUCCEEDED, reference)
    assert reload(order).refunded_amount == Decimal("10.00")


def test_gateway_callback_for_a_recovered_refund_is_a_duplicate(
    client, make_order, apply_crashes_once
):
    order = make_order(S.PAID)
    with pytest.raises(RuntimeError):
        refund_payment(order, amount="10.00", user=None, reason="x")
    reference = PaymentRequest.objects.get().answer_reference
    recover_payment_requests(older_than=timedelta(0))

    body = body_for(order.number, "payment.refunded", amount="10.00", transaction=reference)

    assert post(client, body).json() == {"status": "duplicate"}
    assert len(refunds(order)) == 1


def test_recovery_leaves_requests_that_may_still_be_in_flight_alone(make_order, apply_crashes_once):
    order = make_order(S.PAID)
    with pytest.raises(RuntimeError):
        refund_payment(order, amount="10.00", user=None, reason="x")
    request = PaymentRequest.objects.get()

    assert recover_payment_requests(older_than=timedelta(minutes=5)).requests == ()
    assert list(PaymentRequest.objects.stuck(timedelta(minutes=5))) == []

    backdate(request, minutes=6)

    assert list(PaymentRequest.objects.stuck(timedelta(minutes=5))) == [request]
    summary = recover_payment_requests(older_than=timedelta(minutes=5))
    assert [r.status for r in summary.requests] == [RequestStatus.SUCCEEDED]


def test_recovery_never_resends_a_request_older_than_the_gateway_keeps_keys(
    make_order, gateway_calls, answer_lost
):
    order = make_order(S.PAID)
    with pytest.raises(ConnectionResetError):
        refund_payment(order, amount="10.00", user=None, reason="x")
    backdate(PaymentRequest.objects.get(), minutes=2 * 24 * 60)

    summary = recover_payment_requests(older_than=timedelta(minutes=5))

    assert [r.status for r in summary.unresolved] == [RequestStatus.PENDING]
    assert "gateway's dashboard" in summary.unresolved[0].done
    assert len(gateway_calls.calls) == 1
    assert refunds(order) == []


def test_recovery_fails_a_request_the_gateway_refuses_when_asked_again(
    make_order, gateway_calls, answer_lost
):
    order = make_order(S.PAID)
    with pytest.raises(ConnectionResetError):
        refund_payment(order, amount="10.00", user=None, reason="x")

    with override_settings(ORDERFLOW_HMAC_SIMULATED_OUTCOME="decline"):
        summary = recover_payment_requests(older_than=timedelta(0))

    assert [r.status for r in summary.requests] == [RequestStatus.FAILED]
    assert "declined" in PaymentRequest.objects.get().detail
    assert refunds(order) == []


@pytest.fixture
def failed_meanwhile(monkeypatch, gateway_calls):
    """While the gateway refunds, another process marks the request failed."""
    answered = HmacGateway.refund  # the counting wrapper

    def refund(self, request, *, credentials):
        other = PaymentRequest.objects.get(order__number=request.order_number)
        payment_requests.mark_failed(other, "Refused, as another process was told.")
        return answered(self, request, credentials=credentials)

    monkeypatch.setattr(HmacGateway, "refund", refund)


def test_answer_for_a_request_marked_failed_meanwhile_is_recorded(make_order, failed_meanwhile):
    order = make_order(S.PAID)

    result = refund_payment(order, amount="100.00", user=None, reason="returned everything")

    request = PaymentRequest.objects.get(order=order)
    assert result.outcome == "applied"
    assert request.status == RequestStatus.SUCCEEDED
    assert "marked failed earlier (Refused, as another process was told.)" in request.detail
    assert request.transaction == result.transaction
    assert refunds(order) == [(request.answer_reference, Decimal("100.00"))]
    order = reload(order)
    assert (order.status, order.refunded_amount) == (S.REFUNDED, Decimal("100.00"))
    with pytest.raises(PaymentError, match="Only a paid or partially paid order"):
        refund_payment(order, amount="100.00", user=None, reason="again")
    assert len(refunds(order)) == 1


def test_recovery_applies_an_answer_stored_after_the_request_was_marked_failed(
    make_order, gateway_calls, failed_meanwhile, apply_crashes_once
):
    order = make_order(S.PAID)
    with pytest.raises(RuntimeError, match="worker killed"):
        refund_payment(order, amount="100.00", user=None, reason="returned everything")
    request = PaymentRequest.objects.get(order=order)
    assert (request.status, request.answer_amount) == (RequestStatus.FAILED, Decimal("100.00"))
    # Money moved though the ledger does not show it yet: it is not offered again.
    with pytest.raises(PaymentError, match="already being refunded"):
        refund_payment(order, amount="100.00", user=None, reason="again")

    summary = recover_payment_requests(older_than=timedelta(0))

    assert [(r.request.pk, r.status) for r in summary.requests] == [
        (request.pk, RequestStatus.SUCCEEDED)
    ]
    assert len(gateway_calls.calls) == 1  # the stored answer is applied, not asked again
    assert refunds(order) == [(request.answer_reference, Decimal("100.00"))]
    assert reload(order).refunded_amount == Decimal("100.00")
    assert recover_payment_requests(older_than=timedelta(0)).requests == ()


def test_a_refusal_never_fails_a_request_whose_answer_is_stored(make_order, apply_crashes_once):
    with pytest.raises(RuntimeError):
        refund_payment(make_order(S.PAID), amount="10.00", user=None, reason="x")
    request = PaymentRequest.objects.get()

    payment_requests.mark_failed(request, "Refused.")

    request.refresh_from_db()
    assert (request.status, request.detail) == (RequestStatus.PENDING, "")
    assert recover_payment_requests(older_than=timedelta(0)).count(RequestStatus.SUCCEEDED) == 1


def claim_for(request: PaymentRequest, seconds: int) -> None:
    PaymentRequest.objects.filter(pk=request.pk).update(
        claimed_until=timezone.now() + timedelta(seconds=seconds)
    )


def test_live_request_is_claimed_until_its_gateway_call_returns(make_order, monkeypatch):
    order = make_order(S.PAID)
    answer = HmacGateway.refund
    seen = {}

    def refund(self, request, *, credentials):
        if not seen:
            seen["recovery"] = None  # the calls recovery might make come here too
            seen["recovery"] = recover_payment_requests(older_than=timedelta(0))
            row = PaymentRequest.objects.get()
            seen["claimed for"] = row.claimed_until - timezone.now()
        return answer(self, request, credentials=credentials)

    monkeypatch.setattr(HmacGateway, "refund", refund)

    refund_payment(order, amount="10.00", user=None, reason="x")

    assert seen["recovery"].requests == ()
    # Longer than the Stripe client may wait: 3 tries of 5 s + 20 s.
    assert seen["claimed for"] > timedelta(seconds=3 * (5 + 20))
    request = PaymentRequest.objects.get()
    assert (request.status, request.claimed_until) == (RequestStatus.SUCCEEDED, None)
    assert len(refunds(order)) == 1


def test_recovery_skips_a_claimed_request_and_takes_it_once_the_claim_lapsed(
    make_order, gateway_calls, answer_lost
):
    order = make_order(S.PAID)
    with pytest.raises(ConnectionResetError):
        refund_payment(order, amount="10.00", user=None, reason="x")
    request = PaymentRequest.objects.get()
    assert request.claimed_until is None  # the live process let go when it gave up
    claim_for(request, seconds=60)  # another process is working on it

    assert recover_payment_requests(older_than=timedelta(0)).requests == ()
    assert recover_payment_requests(older_than=timedelta(0), dry_run=True).requests == ()
    assert len(gateway_calls.calls) == 1
    assert PaymentRequest.objects.get().status == RequestStatus.PENDING

    claim_for(request, seconds=-1)
    summary = recover_payment_requests(older_than=timedelta(0))

    assert [r.status for r in summary.requests] == [RequestStatus.SUCCEEDED]
    assert gateway_calls.keys("refund") == [request.idempotency_key] * 2
    assert len(refunds(order)) == 1
    assert PaymentRequest.objects.get().claimed_until is None


def test_two_recoveries_in_a_row_never_send_twice(
    make_order, gateway_calls, answer_lost, monkeypatch
):
    order = make_order(S.PAID)
    with pytest.raises(ConnectionResetError):
        refund_payment(order, amount="10.00", user=None, reason="x")
    asking = HmacGateway.refund
    overlapping = {}

    def refund(self, request, *, credentials):
        if not overlapping:
            # A second recovery starts while the first is asking the gateway.
            overlapping["second"] = None
            overlapping["second"] = recover_payment_requests(older_than=timedelta(0))
        return asking(self, request, credentials=credentials)

    monkeypatch.setattr(HmacGateway, "refund", refund)

    first = recover_payment_requests(older_than=timedelta(0))
    after = recover_payment_requests(older_than=timedelta(0))

    assert [r.status for r in first.requests] == [RequestStatus.SUCCEEDED]
    assert overlapping["second"].requests == ()
    assert after.requests == ()
    assert len(gateway_calls.calls) == 2  # the lost answer, then the first recovery
    assert len(refunds(order)) == 1
    assert reload(order).refunded_amount == Decimal("10.00")


def test_recovery_leaves_a_request_claimed_after_it_was_listed(
    make_order, gateway_calls, answer_lost, monkeypatch
):
    answer_lost["lost"] = 2
    orders = [make_order(S.PAID), make_order(S.PAID)]
    for order in orders:
        with pytest.raises(ConnectionResetError):
            refund_payment(order, amount="10.00", user=None, reason="x")
    first, second = (PaymentRequest.objects.get(order=order) for order in orders)
    asking = HmacGateway.refund

    def refund(self, request, *, credentials):
        claim_for(second, seconds=60)  # another process takes the second meanwhile
        return asking(self, request, credentials=credentials)

    monkeypatch.setattr(HmacGateway, "refund", refund)

    summary = recover_payment_requests(older_than=timedelta(0))

    assert [(r.request.pk, r.status) for r in summary.requests] == [
        (first.pk, RequestStatus.SUCCEEDED),
        (second.pk, RequestStatus.PENDING),
    ]
    assert "another process is working on it" in summary.requests[1].done
    assert gateway_calls.keys("refund") == [
        first.idempotency_key,
        second.idempotency_key,
        first.idempotency_key,
    ]
    assert refunds(orders[1]) == []


# -- the recovery command -------------------------------------------------------------------


def test_recover_command_dry_run_then_recovers_and_exits_zero(
    make_order, gateway_calls, apply_crashes_once
):
    order = make_order(S.PAID)
    with pytest.raises(RuntimeError):
        refund_payment(order, amount="10.00", user=None, reason="damaged box")
    request = PaymentRequest.objects.get()
    backdate(request, minutes=10)

    dry = run("recover_payment_requests", "--dry-run")

    assert f"payment request {request.pk} (refund 10.00 USD, order {order.number})" in dry
    assert "would record the stored answer" in dry
    assert "1 request(s) would be recovered (dry run)." in dry
    assert PaymentRequest.objects.get().status == RequestStatus.PENDING
    assert refunds(order) == []

    out = run("recover_payment_requests")

    assert "Recovered 1 request(s): 1 succeeded, 0 failed, 0 still pending." in out
    assert PaymentRequest.objects.get().status == RequestStatus.SUCCEEDED
    assert len(refunds(order)) == 1
    assert reload(order).history.first().channel == "command"
    assert len(gateway_calls.calls) == 1
    assert run("recover_payment_requests") == "No payment requests to recover.\n"


def test_recover_command_exits_non_zero_while_a_request_stays_pending(make_order, monkeypatch):
    order = make_order(S.PAID)

    def unreachable(self, request, *, credentials):
        raise ConnectionRefusedError("gateway down")

    monkeypatch.setattr(HmacGateway, "refund", unreachable)
    with pytest.raises(ConnectionRefusedError):
        refund_payment(order, amount="10.00", user=None, reason="x")
    backdate(PaymentRequest.objects.get(), minutes=10)

    with pytest.raises(CommandError, match=r"1 payment request.* still pending"):
        run("recover_payment_requests")

    request = PaymentRequest.objects.get()
    assert request.status == RequestStatus.PENDING
    assert "ConnectionRefusedError" in request.detail


def test_recover_command_default_age_and_bad_ages(make_order, apply_crashes_once):
    with pytest.raises(RuntimeError):
        refund_payment(make_order(S.PAID), amount="10.00", user=None, reason="x")

    assert run("recover_payment_requests") == "No payment requests to recover.\n"
    assert "would record" in run("recover_payment_requests", "--older-than", "0m", "--dry-run")
    with pytest.raises(CommandError, match="not an age"):
        run("recover_payment_requests", "--older-than", "soon")


# -- the row itself and the admin -------------------------------------------------------------


def test_database_keeps_tokens_unique_and_amounts_positive(make_order):
    order = make_order(S.PAID)
    refund_payment(order, amount="10.00", user=None, reason="x")
    request = PaymentRequest.objects.get()

    def copy(**changes):
        fields = {
            "order": order,
            "payment_method": order.payment_method,
            "action": RequestAction.REFUND,
            "amount": Decimal("1.00"),
            "currency": "USD",
            "token": new_request_token(),
            "checkout_reference": "pi_x",
        }
        with transaction.atomic():
            PaymentRequest.objects.create(**{**fields, **changes})

    for changes in [{"token": request.token}, {"amount": Decimal("0")}, {"token": ""}]:
        with pytest.raises(IntegrityError):
            copy(**changes)
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentRequest.objects.filter(pk=request.pk).update(status=RequestStatus.FAILED)


def test_requests_are_only_updated_field_by_field_and_never_deleted(make_order):
    refund_payment(make_order(S.PAID), amount="10.00", user=None, reason="x")
    request = PaymentRequest.objects.get()

    with pytest.raises(RecordIsAppendOnly):
        request.save()
    with pytest.raises(RecordIsAppendOnly):
        request.delete()


def test_admin_lists_requests_read_only(client, admin_user, make_order, apply_crashes_once):
    done = make_order(S.PAID)
    stuck = make_order(S.PAID)
    with pytest.raises(RuntimeError):
        refund_payment(stuck, amount="10.00", user=None, reason="x")
    refund_payment(done, amount="10.00", user=None, reason="x")
    pending = PaymentRequest.objects.get(order=stuck)
    client.force_login(admin_user)
    url = reverse("admin:payments_paymentrequest_changelist")

    def listed(**query):
        response = client.get(url, query)
        assert response.status_code == 200
        return [r.pk for r in response.context["cl"].result_list]

    assert len(listed()) == 2
    assert listed(status__exact="pending") == [pending.pk]
    assert listed(action__exact="refund", q=stuck.number) == [pending.pk]
    assert listed(q=pending.token) == [pending.pk]
    assert client.get(reverse("admin:payments_paymentrequest_add")).status_code == 403
    change = reverse("admin:payments_paymentrequest_change", args=[pending.pk])
    assert client.post(change, {"status": "failed"}).status_code == 403
    delete = reverse("admin:payments_paymentrequest_delete", args=[pending.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert PaymentRequest.objects.get(pk=pending.pk).status == RequestStatus.PENDING
