"""Staff money actions are payment requests: recorded first, sent once, recoverable."""

import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.test import override_settings
from django.urls import reverse

import payments.services
from orders.models import Order
from orders.models import PaymentStatus as S
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
    refund_payment,
    void_payment,
)

pytestmark = pytest.mark.django_db


def refunds(order) -> list[tuple[str, Decimal]]:
    rows = PaymentTransaction.objects.filter(order=order, kind=TransactionKind.REFUND)
    return list(rows.order_by("id").values_list("reference", "amount"))


def reload(order) -> Order:
    return Order.objects.get(pk=order.pk)


@pytest.fixture
def apply_crashes_once(monkeypatch):
    """The process dies after the gateway answered, before the ledger write."""
    original = payments.services.apply_gateway_event
    crashes = []

    def crash_once(*args, **kwargs):
        if not crashes:
            crashes.append(True)
            raise RuntimeError("worker killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(payments.services, "apply_gateway_event", crash_once)
    return crashes


# -- the same intent, sent again ----------------------------------------------------------


ACTIONS = {
    "capture": (S.AUTHORIZED, lambda order, **kw: capture_payment(order, user=None, **kw)),
    "void": (S.AUTHORIZED, lambda order, **kw: void_payment(order, user=None, **kw)),
    "refund": (
        S.PAID,
        lambda order, **kw: refund_payment(order, "10.00", user=None, reason="x", **kw),
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
    refund_payment(order, "10.00", user=None, reason="damaged", token=token)
    refund_payment(order, user=None, reason="returned the rest")
    assert reload(order).status == S.REFUNDED

    # The form of the first refund, sent again: not "a refunded order cannot be refunded".
    with pytest.raises(RequestAlreadySubmitted, match="already submitted"):
        refund_payment(order, "10.00", user=None, reason="damaged", token=token)
    with pytest.raises(RequestAlreadySubmitted):
        refund_payment(order, user=None, reason="damaged", token=token)

    assert len(gateway_calls.calls) == 2
    assert [amount for _ref, amount in refunds(order)] == [Decimal("10.00"), Decimal("90.00")]


def refund_elsewhere(first, paid, authorized, token):
    return refund_payment(paid, "10.00", user=None, reason="x", token=token)


def refund_another_amount(first, paid, authorized, token):
    return refund_payment(first, "20.00", user=None, reason="x", token=token)


def capture_instead(first, paid, authorized, token):
    return capture_payment(authorized, "10.00", user=None, token=token)


@pytest.mark.parametrize("reuse", [refund_another_amount, refund_elsewhere, capture_instead])
def test_token_reused_for_another_request_is_refused(make_order, gateway_calls, reuse):
    first, paid, authorized = make_order(S.PAID), make_order(S.PAID), make_order(S.AUTHORIZED)
    token = new_request_token()
    refund_payment(first, "10.00", user=None, reason="x", token=token)

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
        refund_payment(make_order(S.PAID), "10.00", user=None, reason="x", token=token)

    assert gateway_calls.calls == []
    assert not PaymentRequest.objects.exists()


def test_each_call_without_a_token_is_a_new_intent(make_order, gateway_calls):
    order = make_order(S.PAID)

    refund_payment(order, "10.00", user=None, reason="x")
    refund_payment(order, "10.00", user=None, reason="x")

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
        refund_payment(order, "10.00", user=cashier, reason="x", token=token)

    failed = PaymentRequest.objects.get(token=token)
    assert failed.status == RequestStatus.FAILED
    assert "declined" in failed.detail
    assert failed.transaction is None
    assert failed.completed_at is not None
    assert (failed.requested_by, failed.channel) == (cashier, "admin")
    assert refunds(order) == []
    # The same form again is told it failed, and nothing is sent.
    with pytest.raises(RequestAlreadySubmitted, match="it failed: The test gateway declined"):
        refund_payment(order, "10.00", user=cashier, reason="x", token=token)
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

    refund_payment(order, "10.00", user=None, reason="x", token=token)

    assert seen == {"open transaction": False, "other": [{"status": RequestStatus.PENDING}]}
    assert PaymentRequest.objects.get(token=token).status == RequestStatus.SUCCEEDED


def test_succeeded_request_names_its_ledger_entry_and_answer(make_order, cashier):
    order = make_order(S.PAID)

    result = refund_payment(order, "10.00", user=cashier, reason="damaged box")

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
        refund_payment(order, "10.00", user=None, reason="x")

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
        refund_payment(order, "60.00", user=None, reason="first")

    with pytest.raises(PaymentError, match=r"60\.00 USD of order .* is already being refunded"):
        refund_payment(order, "50.00", user=None, reason="second")
    rest = refund_payment(order, user=None, reason="the rest")

    assert rest.transaction.amount == Decimal("40.00")
    assert len(gateway_calls.calls) == 2


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


# -- the row itself and the admin -------------------------------------------------------------


def test_database_keeps_tokens_unique_and_amounts_positive(make_order):
    order = make_order(S.PAID)
    refund_payment(order, "10.00", user=None, reason="x")
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
    refund_payment(make_order(S.PAID), "10.00", user=None, reason="x")
    request = PaymentRequest.objects.get()

    with pytest.raises(RecordIsAppendOnly):
        request.save()
    with pytest.raises(RecordIsAppendOnly):
        request.delete()


def test_admin_lists_requests_read_only(client, admin_user, make_order, apply_crashes_once):
    done = make_order(S.PAID)
    stuck = make_order(S.PAID)
    with pytest.raises(RuntimeError):
        refund_payment(stuck, "10.00", user=None, reason="x")
    refund_payment(done, "10.00", user=None, reason="x")
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
