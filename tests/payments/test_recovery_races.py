"""
Recovery racing staff requests still in flight: real threads on PostgreSQL.

A live refund is held inside the Stripe call while ``recover_payment_requests``
runs with no age limit. Stripe is the real library over ``InFlightStripeAPI``,
which keeps idempotency keys as Stripe does: the same key is answered 409
while its first request is in progress, and with that request's answer after.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe
from django.utils import timezone

from orders.models import Order
from orders.models import PaymentStatus as S
from payments.exceptions import PaymentError, RequestAlreadySubmitted
from payments.gateways.hmac import HmacGateway
from payments.models import PaymentRequest, PaymentTransaction, RequestStatus, TransactionKind
from payments.services import new_request_token, recover_payment_requests, refund_payment
from tests.factories import PaymentMethodFactory
from tests.payments.test_concurrency import run_together
from tests.payments.test_stripe import (
    API_KEY,
    WEBHOOK_SECRET,
    FakeStripeAPI,
    SentRequest,
    paid_order,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TRIALS = 10
WAIT = 30
"""Seconds; a wait this long means a thread hung."""


class InFlightStripeAPI(FakeStripeAPI):
    """
    The fake Stripe API with Stripe's idempotency keys, able to hold a call in flight.

    With ``hold`` on, the first request of a key waits for ``release`` (and
    sets ``held`` meanwhile). The same key is answered 409 while its first
    request is in progress, and with that request's answer afterwards.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.held = threading.Event()
        self.release = threading.Event()
        self.guard = threading.Lock()
        self.in_progress: set[str] = set()
        self.answers: dict[str, tuple[str, int, dict]] = {}
        self.conflicts = 0

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        key = headers["Idempotency-Key"]
        with self.guard:
            if key in self.answers or key in self.in_progress:
                params = dict(parse_qsl(post_data or ""))
                self.sent.append(SentRequest(method, urlsplit(url).path, dict(headers), params))
                if key in self.answers:
                    return self.answers[key]
                self.conflicts += 1
                return self._conflict(key)
            self.in_progress.add(key)
        try:
            if self.hold:
                self.held.set()
                assert self.release.wait(timeout=WAIT), "the held call was never released"
            answer = super().request(method, url, headers, post_data, _usage=_usage)
            with self.guard:
                self.answers[key] = answer
            return answer
        finally:
            with self.guard:
                self.in_progress.discard(key)

    @staticmethod
    def _conflict(key: str) -> tuple[str, int, dict[str, str]]:
        message = (
            "There is currently another in-progress request using this Idempotent Key "
            "(that probably means you submitted twice, and the other request is still "
            f"going through): {key}. Please try again later."
        )
        body = {"error": {"type": "idempotency_error", "message": message}}
        return json.dumps(body), 409, {"request-id": "req_conflict"}


@pytest.fixture
def stripe_api(monkeypatch) -> InFlightStripeAPI:
    """Replace the library's HTTP client: nothing reaches the network."""
    fake = InFlightStripeAPI()
    monkeypatch.setattr(stripe, "default_http_client", fake)
    return fake


@pytest.fixture
def method(db):
    return PaymentMethodFactory(
        code="stripe",
        name="Stripe",
        gateway="stripe",
        webhook_secret=WEBHOOK_SECRET,
        api_key=API_KEY,
    )


def refunds(order: Order) -> list[tuple[str, Decimal]]:
    rows = PaymentTransaction.objects.filter(order=order, kind=TransactionKind.REFUND)
    return list(rows.order_by("id").values_list("reference", "amount"))


@pytest.mark.parametrize("lease", ["held", "lapsed"])
@pytest.mark.parametrize("trial", range(TRIALS))
def test_recovery_racing_a_live_refund_never_loses_it_or_lets_a_second_through(
    method, stripe_api, lease, trial
):
    order = paid_order(method)
    stripe_api.hold = True

    def live_refund():
        return refund_payment(order, amount="100.00", user=None, reason="Returned everything")

    def recovery():
        try:
            assert stripe_api.held.wait(timeout=WAIT), "the live refund never reached Stripe"
            if lease == "lapsed":
                # The live call has outlived its claim: recovery may take the
                # request over and ask Stripe, which is still working on it.
                PaymentRequest.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
            return recover_payment_requests(older_than=timedelta(0))
        finally:
            stripe_api.release.set()

    live, summary = run_together(live_refund, recovery)

    assert not isinstance(live, Exception), live
    assert not isinstance(summary, Exception), summary
    request = PaymentRequest.objects.get(order=order)
    [(reference, amount)] = refunds(order)
    assert (reference.startswith("re_"), amount) == (True, Decimal("100.00"))
    assert (request.status, request.answer_reference) == (RequestStatus.SUCCEEDED, reference)
    assert (live.outcome, live.transaction) == ("applied", request.transaction)
    assert request.claimed_until is None
    order = Order.objects.get(pk=order.pk)
    assert (order.status, order.refunded_amount) == (S.REFUNDED, Decimal("100.00"))
    assert {sent.headers["Idempotency-Key"] for sent in stripe_api.sent} == {
        request.idempotency_key
    }
    if lease == "held":
        assert summary.requests == ()  # the live process's claim kept recovery away
        assert len(stripe_api.sent) == 1
    else:
        # Stripe's 409 for the key in progress left the request pending.
        assert [r.status for r in summary.requests] == [RequestStatus.PENDING]
        assert "same idempotency key" in summary.requests[0].done
        assert stripe_api.conflicts >= 1

    sent = len(stripe_api.sent)
    stripe_api.hold = False
    with pytest.raises(PaymentError, match="Only a paid or partially paid order") as refused:
        refund_payment(
            order,
            amount="100.00",
            user=None,
            reason="Returned everything",
            token=new_request_token(),
        )

    assert not isinstance(refused.value, RequestAlreadySubmitted)
    assert len(stripe_api.sent) == sent
    assert refunds(order) == [(reference, Decimal("100.00"))]


@pytest.mark.parametrize("trial", range(TRIALS))
def test_two_recoveries_at_once_send_a_request_once(make_order, gateway_calls, monkeypatch, trial):
    order = make_order(S.PAID)
    answered = HmacGateway.refund  # the counting wrapper
    lost = {"answers": 1}

    def refund(self, request, *, credentials):
        result = answered(self, request, credentials=credentials)
        if lost["answers"]:
            lost["answers"] -= 1
            raise TimeoutError("read timed out")
        return result

    monkeypatch.setattr(HmacGateway, "refund", refund)
    with pytest.raises(TimeoutError):
        refund_payment(order, amount="10.00", user=None, reason="x")
    gateway_calls.delay = 0.05  # the second recovery starts while the first is asking

    first, second = run_together(
        lambda: recover_payment_requests(older_than=timedelta(0)),
        lambda: recover_payment_requests(older_than=timedelta(0)),
    )

    assert not isinstance(first, Exception), first
    assert not isinstance(second, Exception), second
    assert len(gateway_calls.calls) == 2  # the live call, then one recovery
    done = [r.done for summary in (first, second) for r in summary.requests]
    assert sum("asked the gateway again" in d for d in done) == 1, done
    assert all("asked the gateway again" in d or "another process" in d for d in done), done
    request = PaymentRequest.objects.get(order=order)
    assert request.status == RequestStatus.SUCCEEDED
    assert request.claimed_until is None
    assert [amount for _ref, amount in refunds(order)] == [Decimal("10.00")]
    assert Order.objects.get(pk=order.pk).refunded_amount == Decimal("10.00")
