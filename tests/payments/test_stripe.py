"""
Section 9: the ``stripe`` gateway, with the real library and no network.

Callbacks are Stripe events signed by ``stripe.WebhookSignature`` and posted
through the Django test client. Staff captures, voids and refunds go through
the library; its HTTP client is replaced by ``FakeStripeAPI``, which answers
like the Stripe API and records what was sent.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe
from django.urls import reverse

from orders.exceptions import InvalidOrder
from orders.models import Order
from orders.models import PaymentStatus as S
from orders.services import place_order
from payments.exceptions import GatewayError, GatewayNoAnswer, PaymentError
from payments.gateways import PaymentResult
from payments.models import (
    EventOutcome,
    GatewayEvent,
    PaymentMethod,
    PaymentRequest,
    PaymentTransaction,
    RequestStatus,
    TransactionKind,
)
from payments.services import (
    capture_payment,
    recover_payment_requests,
    refund_payment,
    void_payment,
)
from tests.factories import PaymentMethodFactory, next_number

WEBHOOK_SECRET = "whsec_test_0f3c9a7e51d24b8c"
API_KEY = "sk_test_51Hx0rderflowFakeKey9"

_ids = itertools.count(1)


def stripe_id(prefix: str) -> str:
    return f"{prefix}_3Qx{next(_ids):08d}TEST"


# -- Stripe objects, as Stripe sends them -------------------------------------------------


def payment_intent(
    intent_id: str,
    *,
    amount: int,
    currency: str = "usd",
    status: str = "requires_capture",
    amount_capturable: int = 0,
    amount_received: int = 0,
    order_number: str | None = None,
) -> dict[str, Any]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": amount_capturable,
        "amount_received": amount_received,
        "capture_method": "manual",
        "client_secret": f"{intent_id}_secret_abc",
        "created": int(time.time()) - 60,
        "currency": currency,
        "customer": None,
        "latest_charge": stripe_id("ch"),
        "livemode": False,
        "metadata": {"order_number": order_number} if order_number else {},
        "payment_method": stripe_id("pm"),
        "payment_method_types": ["card"],
        "status": status,
    }


def refund_object(
    refund_id: str,
    *,
    amount: int,
    payment_intent_id: str,
    currency: str = "usd",
    status: str = "succeeded",
    created: int | None = None,
) -> dict[str, Any]:
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": stripe_id("txn"),
        "charge": stripe_id("ch"),
        "created": created if created is not None else int(time.time()),
        "currency": currency,
        "metadata": {},
        "payment_intent": payment_intent_id,
        "reason": "requested_by_customer",
        "status": status,
    }


def charge(
    *,
    payment_intent_id: str,
    amount: int,
    amount_refunded: int,
    refunds: list[dict[str, Any]],
    currency: str = "usd",
    order_number: str | None = None,
) -> dict[str, Any]:
    return {
        "id": stripe_id("ch"),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "captured": True,
        "created": int(time.time()) - 600,
        "currency": currency,
        "livemode": False,
        "metadata": {"order_number": order_number} if order_number else {},
        "paid": True,
        "payment_intent": payment_intent_id,
        "refunded": amount_refunded == amount,
        "refunds": {
            "object": "list",
            "data": refunds,
            "has_more": False,
            "total_count": len(refunds),
            "url": "/v1/charges/ch_x/refunds",
        },
        "status": "succeeded",
    }


def stripe_event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> bytes:
    event = {
        "id": event_id or stripe_id("evt"),
        "object": "event",
        "api_version": stripe.api_version,
        "created": int(time.time()),
        "data": {"object": obj, "previous_attributes": {}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return json.dumps(event, indent=2).encode()


def sign(body: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=timestamp if timestamp is not None else int(time.time())
    )


def post(client, method: PaymentMethod, body: bytes, *, signature: str | None = None):
    """Post ``body`` signed now, or with ``signature`` ("" sends no header at all)."""
    header = sign(body) if signature is None else signature
    extra = {"HTTP_STRIPE_SIGNATURE": header} if header else {}
    return client.post(
        reverse("payments:callback", args=[method.code]),
        data=body,
        content_type="application/json",
        **extra,
    )


# -- the Stripe API, offline ----------------------------------------------------------------


@dataclass
class SentRequest:
    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, str]


class FakeStripeAPI(stripe.HTTPClient):
    """Answer the few Stripe API calls orderflow makes; record every request."""

    name = "fake"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[SentRequest] = []
        self.currency = "usd"
        self.refund_status = "succeeded"
        self.failure: tuple[int, dict[str, Any]] | None = None
        self.unreachable = False
        """Time out after the request was sent: Stripe may or may not have acted."""

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        path = urlsplit(url).path
        params = dict(parse_qsl(post_data or ""))
        self.sent.append(SentRequest(method, path, dict(headers or {}), params))
        if self.unreachable:
            raise stripe.APIConnectionError("Request timed out", should_retry=False)
        if self.failure is not None:
            status, body = self.failure
            return json.dumps(body), status, {"request-id": "req_fake"}
        answer = self._answer(path, params)
        if answer is None:
            missing = {"error": {"type": "invalid_request_error", "code": "resource_missing"}}
            return json.dumps(missing), 404, {}
        return json.dumps(answer), 200, {}

    def _answer(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        if match := re.fullmatch(r"/v1/payment_intents/([^/]+)/capture", path):
            received = int(params["amount_to_capture"])
            return payment_intent(
                match[1],
                amount=received,
                currency=self.currency,
                status="succeeded",
                amount_received=received,
            )
        if match := re.fullmatch(r"/v1/payment_intents/([^/]+)/cancel", path):
            return payment_intent(match[1], amount=10000, currency=self.currency, status="canceled")
        if path == "/v1/refunds":
            return refund_object(
                stripe_id("re"),
                amount=int(params["amount"]),
                payment_intent_id=params["payment_intent"],
                currency=self.currency,
                status=self.refund_status,
            )
        return None


@pytest.fixture(autouse=True)
def stripe_api(monkeypatch) -> FakeStripeAPI:
    """Replace the library's HTTP client: no test in this module reaches the network."""
    fake = FakeStripeAPI()
    monkeypatch.setattr(stripe, "default_http_client", fake)
    return fake


@pytest.fixture
def method(db) -> PaymentMethod:
    return PaymentMethodFactory(
        code="stripe",
        name="Stripe",
        gateway="stripe",
        webhook_secret=WEBHOOK_SECRET,
        api_key=API_KEY,
    )


def place(
    method: PaymentMethod,
    outcome: str,
    *,
    total: str = "100.00",
    currency: str = "USD",
) -> Order:
    return place_order(
        number=next_number(),
        total=Decimal(total),
        currency=currency,
        payment_method=method,
        initial=PaymentResult(outcome, reference=stripe_id("pi")),
    )


def reload(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


def ledger(order: Order, kind: str) -> list[tuple[str, Decimal]]:
    rows = PaymentTransaction.objects.filter(order=order, kind=kind).order_by("id")
    return [(row.reference, row.amount) for row in rows]


# -- payment intents --------------------------------------------------------------------------


@pytest.mark.django_db
def test_amount_capturable_updated_authorizes_a_pending_order(client, method):
    order = place(method, "pending")
    intent = payment_intent(
        order.gateway_reference, amount=10000, amount_capturable=10000, order_number=order.number
    )

    response = post(
        client, method, stripe_event("payment_intent.amount_capturable_updated", intent)
    )

    assert response.status_code == 200
    assert response.json() == {"status": "applied", "order_status": S.AUTHORIZED}
    assert ledger(order, TransactionKind.AUTHORIZATION) == [
        (order.gateway_reference, Decimal("100.00"))
    ]


@pytest.mark.django_db
def test_authorization_recorded_at_checkout_is_not_recorded_again(client, method):
    order = place(method, "authorized")
    intent = payment_intent(
        order.gateway_reference, amount=10000, amount_capturable=10000, order_number=order.number
    )

    response = post(
        client, method, stripe_event("payment_intent.amount_capturable_updated", intent)
    )

    assert response.json() == {"status": "duplicate"}
    assert len(ledger(order, TransactionKind.AUTHORIZATION)) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("received", "status", "captured"),
    [(10000, S.PAID, Decimal("100.00")), (4000, S.PARTIALLY_PAID, Decimal("40.00"))],
)
def test_succeeded_captures_the_amount_received(client, method, received, status, captured):
    order = place(method, "authorized")
    intent = payment_intent(
        order.gateway_reference,
        amount=10000,
        status="succeeded",
        amount_received=received,
        order_number=order.number,
    )

    response = post(client, method, stripe_event("payment_intent.succeeded", intent))

    assert response.json() == {"status": "applied", "order_status": status}
    assert reload(order).captured_amount == captured
    assert ledger(order, TransactionKind.CAPTURE) == [(order.gateway_reference, captured)]


@pytest.mark.django_db
def test_hold_released_to_nothing_is_not_an_authorization(client, method):
    order = place(method, "pending")
    intent = payment_intent(
        order.gateway_reference, amount=10000, amount_capturable=0, order_number=order.number
    )

    response = post(
        client, method, stripe_event("payment_intent.amount_capturable_updated", intent)
    )

    assert response.json()["status"] == "ignored"
    assert reload(order).status == S.AWAITING_PAYMENT
    assert ledger(order, TransactionKind.AUTHORIZATION) == []


@pytest.mark.django_db
def test_payment_failed_declines_a_pending_order(client, method):
    order = place(method, "pending")
    intent = payment_intent(
        order.gateway_reference,
        amount=10000,
        status="requires_payment_method",
        order_number=order.number,
    )

    response = post(client, method, stripe_event("payment_intent.payment_failed", intent))

    assert response.json() == {"status": "applied", "order_status": S.DECLINED}
    assert ledger(order, TransactionKind.DECLINE) == [(order.gateway_reference, Decimal("0"))]


@pytest.mark.django_db
def test_canceled_voids_an_authorized_order(client, method):
    order = place(method, "authorized")
    intent = payment_intent(
        order.gateway_reference, amount=10000, status="canceled", order_number=order.number
    )

    response = post(client, method, stripe_event("payment_intent.canceled", intent))

    assert response.json() == {"status": "applied", "order_status": S.CANCELLED}
    assert len(ledger(order, TransactionKind.VOID)) == 1


@pytest.mark.django_db
def test_payment_after_a_decline_is_applied(client, method):
    # payment_intent.payment_failed is not final: the customer may retry and pay.
    order = place(method, "pending")
    declined = payment_intent(order.gateway_reference, amount=10000, order_number=order.number)
    post(client, method, stripe_event("payment_intent.payment_failed", declined))
    succeeded = {**declined, "status": "succeeded", "amount_received": 10000}

    response = post(client, method, stripe_event("payment_intent.succeeded", succeeded))

    assert response.json() == {"status": "applied", "order_status": "paid"}
    assert not reload(order).needs_attention
    assert ledger(order, TransactionKind.CAPTURE) == [(order.gateway_reference, Decimal("100"))]


@pytest.mark.django_db
def test_capture_of_a_cancelled_order_is_ignored_but_its_money_recorded(client, method):
    order = place(method, "pending")
    canceled = payment_intent(
        order.gateway_reference, amount=10000, status="canceled", order_number=order.number
    )
    post(client, method, stripe_event("payment_intent.canceled", canceled))
    succeeded = {**canceled, "status": "succeeded", "amount_received": 10000}

    response = post(client, method, stripe_event("payment_intent.succeeded", succeeded))

    assert response.json()["status"] == "ignored"
    assert reload(order).status == S.CANCELLED
    assert reload(order).needs_attention
    assert ledger(order, TransactionKind.CAPTURE) == [(order.gateway_reference, Decimal("100"))]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("currency", "total", "minor_units"),
    [
        ("JPY", "1500", 1500),
        ("KWD", "1.230", 1230),
        ("USD", "12.34", 1234),
        ("MGA", "50000", 50000),
        ("ISK", "5000", 500000),
    ],
)
def test_amounts_are_minor_units_of_the_currency(client, method, currency, total, minor_units):
    order = place(method, "authorized", total=total, currency=currency)
    intent = payment_intent(
        order.gateway_reference,
        amount=minor_units,
        currency=currency.lower(),
        status="succeeded",
        amount_received=minor_units,
        order_number=order.number,
    )

    response = post(client, method, stripe_event("payment_intent.succeeded", intent))

    assert response.json() == {"status": "applied", "order_status": S.PAID}
    assert reload(order).captured_amount == Decimal(total)


@pytest.mark.django_db
def test_three_decimal_amount_stripe_cannot_send_is_rejected_naming_the_problem(client, method):
    order = place(method, "authorized", total="1.234", currency="KWD")
    intent = payment_intent(
        order.gateway_reference,
        amount=1234,
        currency="kwd",
        status="succeeded",
        amount_received=1234,
        order_number=order.number,
    )

    response = post(client, method, stripe_event("payment_intent.succeeded", intent))

    assert response.status_code == 400
    assert response.json()["error"] == (
        "data.object.amount_received 1234 is not a multiple of 10: "
        "Stripe counts KWD in thousandths that end in 0"
    )
    assert reload(order).status == S.AUTHORIZED


@pytest.mark.django_db
def test_order_is_found_by_payment_intent_without_an_order_number(client, method):
    order = place(method, "pending")
    place(method, "pending")  # another order of the same method
    intent = payment_intent(order.gateway_reference, amount=10000, amount_capturable=10000)
    assert intent["metadata"] == {}

    response = post(
        client, method, stripe_event("payment_intent.amount_capturable_updated", intent)
    )

    assert response.json() == {"status": "applied", "order_status": S.AUTHORIZED}
    assert GatewayEvent.objects.get().order == order


@pytest.mark.django_db
def test_event_for_an_unknown_order_number_is_unmatched(client, method):
    intent = payment_intent(
        stripe_id("pi"), amount=10000, amount_capturable=10000, order_number="NOT-YET"
    )

    response = post(
        client, method, stripe_event("payment_intent.amount_capturable_updated", intent)
    )

    assert response.status_code == 404
    assert GatewayEvent.objects.get().outcome == EventOutcome.UNMATCHED


@pytest.mark.django_db
def test_payment_this_store_never_created_is_200_ignored(client, method):
    # Another integration on the same Stripe account: no order number, an id
    # nobody here knows. A 404 would make Stripe retry it for days.
    intent = payment_intent(stripe_id("pi"), amount=10000, amount_capturable=10000)

    response = post(
        client, method, stripe_event("payment_intent.amount_capturable_updated", intent)
    )

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    stored = GatewayEvent.objects.get()
    assert (stored.outcome, stored.order) == (EventOutcome.IGNORED, None)


@pytest.mark.django_db
def test_unknown_event_type_is_stored_as_ignored(client, method):
    customer = {"id": stripe_id("cus"), "object": "customer", "email": "ada@example.com"}
    body = stripe_event("customer.created", customer)

    response = post(client, method, body)

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    stored = GatewayEvent.objects.get()
    assert (stored.event_type, stored.outcome, stored.order) == (
        "customer.created",
        EventOutcome.IGNORED,
        None,
    )
    assert stored.raw_body == body.decode()


@pytest.mark.django_db
def test_same_event_delivered_twice_has_one_effect(client, method):
    order = place(method, "authorized")
    intent = payment_intent(
        order.gateway_reference,
        amount=10000,
        status="succeeded",
        amount_received=10000,
        order_number=order.number,
    )
    body = stripe_event("payment_intent.succeeded", intent)

    first, second = post(client, method, body), post(client, method, body)

    assert first.json()["status"] == "applied"
    assert second.json() == {"status": "duplicate"}
    assert GatewayEvent.objects.count() == 1
    assert reload(order).captured_amount == Decimal("100.00")


# -- refunds ------------------------------------------------------------------------------------


def paid_order(method: PaymentMethod, *, total: str = "100.00") -> Order:
    return place(method, "captured", total=total)


@pytest.mark.django_db
def test_refund_reported_by_two_events_counts_once(client, method):
    order = paid_order(method)
    pending = refund_object(
        stripe_id("re"), amount=3000, payment_intent_id=order.gateway_reference, status="pending"
    )
    refunded_charge = charge(
        payment_intent_id=order.gateway_reference,
        amount=10000,
        amount_refunded=3000,
        refunds=[pending],
        order_number=order.number,
    )
    refund = {**pending, "status": "succeeded"}

    first = post(client, method, stripe_event("charge.refunded", refunded_charge))
    second = post(client, method, stripe_event("refund.updated", refund))

    assert first.json() == {"status": "applied", "order_status": S.PARTIALLY_PAID}
    assert second.json() == {"status": "duplicate"}
    assert ledger(order, TransactionKind.REFUND) == [(refund["id"], Decimal("30.00"))]
    assert reload(order).refunded_amount == Decimal("30.00")


@pytest.mark.django_db
def test_charge_refunded_reports_the_most_recent_refund(client, method):
    order = paid_order(method)
    now = int(time.time())
    older = refund_object(
        stripe_id("re"), amount=3000, payment_intent_id=order.gateway_reference, created=now - 90
    )
    failed = refund_object(
        stripe_id("re"),
        amount=500,
        payment_intent_id=order.gateway_reference,
        status="failed",
        created=now,
    )
    newer = refund_object(
        stripe_id("re"), amount=7000, payment_intent_id=order.gateway_reference, created=now - 10
    )
    post(client, method, stripe_event("refund.created", older))
    refunded_charge = charge(
        payment_intent_id=order.gateway_reference,
        amount=10000,
        amount_refunded=10000,
        refunds=[failed, newer, older],
    )

    response = post(client, method, stripe_event("charge.refunded", refunded_charge))

    assert response.json() == {"status": "applied", "order_status": S.REFUNDED}
    assert ledger(order, TransactionKind.REFUND) == [
        (older["id"], Decimal("30.00")),
        (newer["id"], Decimal("70.00")),
    ]


@pytest.mark.django_db
def test_refund_that_moved_no_money_is_ignored(client, method):
    order = paid_order(method)
    refund = refund_object(
        stripe_id("re"),
        amount=3000,
        payment_intent_id=order.gateway_reference,
        status="requires_action",
    )

    response = post(client, method, stripe_event("refund.updated", refund))

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert ledger(order, TransactionKind.REFUND) == []
    assert reload(order).status == S.PAID


@pytest.mark.django_db
def test_charge_refunded_without_its_refund_list_is_ignored(client, method):
    # Since API version 2022-11-15 Stripe leaves Charge.refunds out unless
    # expanded; the refund.* events then report each refund.
    order = paid_order(method)
    refunded_charge = charge(
        payment_intent_id=order.gateway_reference, amount=10000, amount_refunded=10000, refunds=[]
    )
    del refunded_charge["refunds"]

    response = post(client, method, stripe_event("charge.refunded", refunded_charge))

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert ledger(order, TransactionKind.REFUND) == []
    # A routine event that carried nothing to record needs nobody's attention.
    assert GatewayEvent.objects.get(event_type="charge.refunded").order == order
    assert not reload(order).needs_attention


@pytest.mark.django_db
def test_refund_in_a_zero_decimal_currency(client, method):
    order = place(method, "captured", total="1500", currency="JPY")
    refund = refund_object(
        stripe_id("re"), amount=500, payment_intent_id=order.gateway_reference, currency="jpy"
    )

    response = post(client, method, stripe_event("refund.created", refund))

    assert response.json() == {"status": "applied", "order_status": S.PARTIALLY_PAID}
    assert reload(order).refunded_amount == Decimal("500")


# -- staff actions through the Stripe API ---------------------------------------------------


@pytest.mark.django_db
def test_staff_refund_then_stripe_callback_counts_once(client, method, stripe_api):
    order = paid_order(method)

    result = refund_payment(
        order, amount=Decimal("25.00"), user=None, reason="Customer returned a mug"
    )

    [sent] = stripe_api.sent
    assert (sent.method, sent.path) == ("post", "/v1/refunds")
    assert sent.params["amount"] == "2500"
    assert sent.params["payment_intent"] == order.gateway_reference
    assert sent.params["metadata[order_number]"] == order.number
    [request] = PaymentRequest.objects.filter(order=order)
    assert sent.headers["Idempotency-Key"] == f"orderflow:request:{request.token}"
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert result.order.status == S.PARTIALLY_PAID
    [(refund_id, amount)] = ledger(order, TransactionKind.REFUND)
    assert refund_id.startswith("re_")
    assert amount == Decimal("25.00")

    refund = refund_object(refund_id, amount=2500, payment_intent_id=order.gateway_reference)
    response = post(client, method, stripe_event("refund.updated", refund))

    assert response.json() == {"status": "duplicate"}
    assert len(ledger(order, TransactionKind.REFUND)) == 1
    assert reload(order).refunded_amount == Decimal("25.00")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("currency", "total", "minor_units"),
    [
        ("USD", "100.00", 10000),
        ("JPY", "1500", 1500),
        ("KWD", "1.230", 1230),
        ("MGA", "50000", 50000),
        ("ISK", "5000", 500000),
    ],
)
def test_staff_capture_sends_minor_units(client, method, stripe_api, currency, total, minor_units):
    order = place(method, "authorized", total=total, currency=currency)
    stripe_api.currency = currency.lower()

    result = capture_payment(order, user=None)

    [sent] = stripe_api.sent
    assert sent.path == f"/v1/payment_intents/{order.gateway_reference}/capture"
    assert sent.params == {"amount_to_capture": str(minor_units)}
    [request] = PaymentRequest.objects.filter(order=order)
    assert sent.headers["Idempotency-Key"] == f"orderflow:request:{request.token}"
    assert result.order.status == S.PAID
    assert ledger(order, TransactionKind.CAPTURE) == [(order.gateway_reference, Decimal(total))]

    # Stripe's own report of the same capture is the same PaymentIntent.
    intent = payment_intent(
        order.gateway_reference,
        amount=minor_units,
        currency=currency.lower(),
        status="succeeded",
        amount_received=minor_units,
    )
    response = post(client, method, stripe_event("payment_intent.succeeded", intent))
    assert response.json() == {"status": "duplicate"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("currency", "total", "problem"),
    [
        ("KWD", "1.234", re.escape("Stripe takes KWD amounts in multiples of 0.010")),
        ("MGA", "50000.50", re.escape("Stripe counts MGA with 0 decimals")),
    ],
)
def test_staff_capture_stripe_cannot_take_exactly_is_refused_and_nothing_sent(
    method, stripe_api, currency, total, problem
):
    order = place(method, "authorized", total=total, currency=currency)

    with pytest.raises(GatewayError, match=problem):
        capture_payment(order, user=None)

    assert stripe_api.sent == []
    assert ledger(order, TransactionKind.CAPTURE) == []
    assert reload(order).status == S.AUTHORIZED


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("currency", "total", "amount", "minor_units"),
    [("ISK", "5000", "1000", "100000"), ("MGA", "50000", "20000", "20000")],
)
def test_staff_refund_sends_stripes_minor_units(
    method, stripe_api, currency, total, amount, minor_units
):
    order = place(method, "captured", total=total, currency=currency)
    stripe_api.currency = currency.lower()

    refund_payment(order, amount=Decimal(amount), user=None, reason="Returned one item")

    [sent] = stripe_api.sent
    assert sent.params["amount"] == minor_units
    [(_refund_id, refunded)] = ledger(order, TransactionKind.REFUND)
    assert refunded == Decimal(amount)


@pytest.mark.django_db
def test_staff_refund_of_an_amount_stripe_cannot_send_is_refused(method, stripe_api):
    order = place(method, "captured", total="10.000", currency="KWD")

    with pytest.raises(GatewayError, match=re.escape("1234 thousandths is not a multiple of 10")):
        refund_payment(order, amount=Decimal("1.234"), user=None, reason="Returned one item")

    assert stripe_api.sent == []
    assert ledger(order, TransactionKind.REFUND) == []


@pytest.mark.django_db
def test_staff_void_cancels_the_payment_intent(client, method, stripe_api):
    order = place(method, "authorized")

    result = void_payment(order, user=None)

    [sent] = stripe_api.sent
    assert sent.path == f"/v1/payment_intents/{order.gateway_reference}/cancel"
    assert "Idempotency-Key" in sent.headers
    assert result.order.status == S.CANCELLED
    assert [ref for ref, _amount in ledger(order, TransactionKind.VOID)] == [
        order.gateway_reference
    ]
    intent = payment_intent(order.gateway_reference, amount=10000, status="canceled")
    response = post(client, method, stripe_event("payment_intent.canceled", intent))
    assert response.json() == {"status": "duplicate"}


@pytest.mark.django_db
def test_card_declined_by_stripe_records_nothing(method, stripe_api):
    order = place(method, "authorized")
    stripe_api.failure = (
        402,
        {
            "error": {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
            }
        },
    )

    with pytest.raises(GatewayError) as caught:
        capture_payment(order, user=None)

    assert "Your card has insufficient funds." in str(caught.value)
    assert API_KEY not in str(caught.value)
    assert caught.value.__suppress_context__  # the library error, with its body, stays out
    assert ledger(order, TransactionKind.CAPTURE) == []
    assert reload(order).status == S.AUTHORIZED


@pytest.mark.django_db
def test_rejected_api_key_is_never_echoed(method, stripe_api):
    order = paid_order(method)
    stripe_api.failure = (
        401,
        {
            "error": {
                "type": "invalid_request_error",
                "message": f"Invalid API Key provided: {API_KEY}",
            }
        },
    )

    with pytest.raises(GatewayError, match="API key") as caught:
        refund_payment(order, user=None, reason="Duplicate order")

    assert API_KEY not in str(caught.value)
    assert ledger(order, TransactionKind.REFUND) == []


@pytest.mark.django_db
def test_refund_stripe_did_not_complete_is_left_to_the_callback(method, stripe_api):
    order = paid_order(method)
    stripe_api.refund_status = "requires_action"

    with pytest.raises(GatewayError, match="requires_action"):
        refund_payment(order, user=None, reason="Customer returned everything")

    assert ledger(order, TransactionKind.REFUND) == []


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["timeout", "server error"])
def test_unanswered_refund_stays_pending_and_is_asked_again_with_its_key(method, stripe_api, how):
    order = paid_order(method)
    if how == "timeout":
        stripe_api.unreachable = True
    else:
        # Stripe: a 500 is indeterminate; the refund may have been made.
        stripe_api.failure = (500, {"error": {"type": "api_error", "message": "Unknown."}})

    with pytest.raises(GatewayNoAnswer, match="may have gone through"):
        refund_payment(order, amount=Decimal("25.00"), user=None, reason="Customer returned a mug")

    request = PaymentRequest.objects.get(order=order)
    assert request.status == RequestStatus.PENDING
    assert "Stripe did not answer the refund" in request.detail
    assert ledger(order, TransactionKind.REFUND) == []
    # Not a refusal: the 25.00 may be on its way back, so it is not offered again.
    with pytest.raises(PaymentError, match="already being refunded"):
        refund_payment(order, amount=Decimal("100.00"), user=None, reason="Everything")

    stripe_api.unreachable = False
    stripe_api.failure = None
    summary = recover_payment_requests(older_than=timedelta(0))

    assert [r.status for r in summary.requests] == [RequestStatus.SUCCEEDED]
    # Asked at least twice (the library may retry by itself), always as one request.
    assert len(stripe_api.sent) >= 2
    assert {sent.headers["Idempotency-Key"] for sent in stripe_api.sent} == {
        request.idempotency_key
    }
    assert all(sent.params == stripe_api.sent[0].params for sent in stripe_api.sent)
    [(refund_id, amount)] = ledger(order, TransactionKind.REFUND)
    assert (refund_id.startswith("re_"), amount) == (True, Decimal("25.00"))
    assert reload(order).status == S.PARTIALLY_PAID


IN_PROGRESS = (
    "There is currently another in-progress request using this Idempotent Key (that "
    "probably means you submitted twice, and the other request is still going through): "
    "orderflow:request:x. Please try again later."
)
OTHER_PARAMETERS = (
    "Keys for idempotent requests can only be used with the same parameters they were "
    "first used with. Try using a key other than 'orderflow:request:x' if you meant to "
    "execute a different request."
)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "message"),
    # A 409 reaches orderflow as stripe.APIError, a 400 as stripe.IdempotencyError.
    [(409, IN_PROGRESS), (400, OTHER_PARAMETERS)],
    ids=["409-in-progress", "400-idempotency-error"],
)
def test_idempotency_key_conflict_is_not_a_refusal(method, stripe_api, status, message):
    order = paid_order(method)
    stripe_api.failure = (status, {"error": {"type": "idempotency_error", "message": message}})

    with pytest.raises(GatewayNoAnswer, match="same idempotency key") as caught:
        refund_payment(order, amount=Decimal("100.00"), user=None, reason="Returned everything")

    assert caught.value.__suppress_context__
    request = PaymentRequest.objects.get(order=order)
    assert (request.status, request.completed_at) == (RequestStatus.PENDING, None)
    assert "may have gone through" in request.detail
    assert ledger(order, TransactionKind.REFUND) == []
    # The other request with this key may be moving the money: not offered again.
    with pytest.raises(PaymentError, match="already being refunded"):
        refund_payment(order, amount=Decimal("100.00"), user=None, reason="Again")

    stripe_api.failure = None
    summary = recover_payment_requests(older_than=timedelta(0))

    assert [r.status for r in summary.requests] == [RequestStatus.SUCCEEDED]
    assert {sent.headers["Idempotency-Key"] for sent in stripe_api.sent} == {
        request.idempotency_key
    }
    [(_refund_id, amount)] = ledger(order, TransactionKind.REFUND)
    assert amount == Decimal("100.00")
    assert reload(order).status == S.REFUNDED


@pytest.mark.django_db
def test_missing_api_key_sends_nothing(stripe_api):
    method = PaymentMethodFactory(
        code="stripe-no-key", gateway="stripe", webhook_secret=WEBHOOK_SECRET, api_key=""
    )
    order = place(method, "authorized")

    with pytest.raises(GatewayError, match="API key"):
        capture_payment(order, user=None)

    assert stripe_api.sent == []


# -- the checkout's reference ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "reference", ["ch_3Qx00000001TEST", "re_3Qx00000001TEST", "pi_3Qx1_secret_abc", "order-17"]
)
def test_stripe_order_placed_with_anything_but_a_payment_intent_is_refused(method, reference):
    with pytest.raises(InvalidOrder) as refused:
        place_order(
            number="S-1",
            total=Decimal("100.00"),
            currency="USD",
            payment_method=method,
            initial=PaymentResult("captured", reference=reference),
        )

    assert repr(reference) in str(refused.value)
    assert "not a Stripe PaymentIntent id" in str(refused.value)
    assert not Order.objects.filter(number="S-1").exists()


@pytest.mark.django_db
def test_other_gateways_name_their_payments_as_they_like(online_method):
    order = place_order(
        number="H-1",
        total=Decimal("100.00"),
        currency="USD",
        payment_method=online_method,
        initial=PaymentResult("captured", reference="ch_1"),
    )

    assert order.gateway_reference == "ch_1"


# -- signatures and malformed bodies ------------------------------------------------------


def succeeded_body(order_number: str = "T-none") -> bytes:
    intent = payment_intent(
        stripe_id("pi"),
        amount=10000,
        status="succeeded",
        amount_received=10000,
        order_number=order_number,
    )
    return stripe_event("payment_intent.succeeded", intent)


def _tampered(body: bytes, now: int) -> tuple[bytes, str]:
    return body.replace(b"10000", b"99999"), sign(body, timestamp=now)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("tampered body", lambda b, now: _tampered(b, now)),
        ("wrong secret", lambda b, now: (b, sign(b, secret="whsec_else", timestamp=now))),
        ("stale timestamp", lambda b, now: (b, sign(b, timestamp=now - 301))),
        ("future timestamp", lambda b, now: (b, sign(b, timestamp=now + 301))),
        ("no v1 signature", lambda b, now: (b, f"t={now},v0=abc")),
        ("no timestamp", lambda b, now: (b, sign(b, timestamp=now).split(",", 1)[1])),
        ("missing header", lambda b, now: (b, "")),
    ],
)
def test_bad_signature_is_refused_and_not_stored(client, method, frozen_clock, case, make):
    body, header = make(succeeded_body(), frozen_clock)

    response = post(client, method, body, signature=header)

    assert response.status_code == 401, case
    assert "error" in response.json()
    if header:
        assert header not in response.content.decode()
    assert GatewayEvent.objects.count() == 0
    method.refresh_from_db()
    assert method.signature_failures == 1


@pytest.mark.django_db
@pytest.mark.parametrize("skew", [-299, -290, 290, 300])
def test_timestamp_within_300_seconds_is_accepted(client, method, frozen_clock, skew):
    body = stripe_event("customer.created", {"id": stripe_id("cus"), "object": "customer"})

    response = post(client, method, body, signature=sign(body, timestamp=frozen_clock + skew))

    assert response.status_code == 200


@pytest.mark.django_db
def test_method_without_webhook_secret_refuses_every_callback(client):
    method = PaymentMethodFactory(code="stripe-unset", gateway="stripe", webhook_secret="")
    body = succeeded_body()

    response = post(client, method, body, signature=sign(body, secret="whsec_anything"))

    assert response.status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (
            lambda e: e["data"]["object"].pop("amount_received"),
            "missing field: data.object.amount_received",
        ),
        (
            lambda e: e["data"]["object"].update(amount_received="100.00"),
            "data.object.amount_received '100.00' is not a whole number of minor units",
        ),
        (
            lambda e: e["data"]["object"].update(amount_received=-5),
            "data.object.amount_received must be greater than zero",
        ),
        (
            lambda e: e["data"]["object"].pop("currency"),
            "missing field: data.object.currency",
        ),
        (
            lambda e: e["data"]["object"].update(currency="us dollars"),
            "currency 'US DOLLARS' is not a 3-letter ISO code",
        ),
        (lambda e: e["data"]["object"].pop("id"), "missing field: data.object.id"),
        (lambda e: e.pop("id"), "missing field: id"),
        (lambda e: e.pop("type"), "missing field: type"),
        (lambda e: e.pop("data"), "missing field: data.object"),
    ],
)
def test_missing_or_bad_fields_are_rejected(client, method, mutate, problem):
    event = json.loads(succeeded_body())
    mutate(event)
    body = json.dumps(event).encode()

    response = post(client, method, body)

    assert response.status_code == 400
    assert response.json()["error"].startswith(problem)
    assert GatewayEvent.objects.get().outcome == EventOutcome.REJECTED


@pytest.mark.django_db
def test_signed_body_that_is_not_json_is_rejected(client, method):
    body = b"{not json"

    response = post(client, method, body)

    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


@pytest.mark.django_db
def test_currency_other_than_the_orders_is_rejected(client, method):
    order = place(method, "authorized")
    intent = payment_intent(
        order.gateway_reference,
        amount=10000,
        currency="eur",
        status="succeeded",
        amount_received=10000,
        order_number=order.number,
    )

    response = post(client, method, stripe_event("payment_intent.succeeded", intent))

    assert response.status_code == 400
    assert "EUR" in response.json()["error"]
    assert reload(order).status == S.AUTHORIZED


# -- secrets never reach the logs ---------------------------------------------------------


@pytest.mark.django_db
def test_no_secret_or_signature_reaches_the_logs(client, method, stripe_api, caplog):
    order = paid_order(method)
    for name in [None, *logging.root.manager.loggerDict]:
        caplog.set_level(logging.DEBUG, logger=name)
    signatures: list[str] = []

    def send(body: bytes, header: str):
        signatures.append(header)
        return post(client, method, body, signature=header)

    refund = refund_object(stripe_id("re"), amount=1000, payment_intent_id=order.gateway_reference)
    good = stripe_event("refund.created", refund)
    assert send(good, sign(good)).status_code == 200
    assert send(good, sign(good, secret="whsec_wrong")).status_code == 401
    assert send(good, sign(good, timestamp=int(time.time()) - 3600)).status_code == 401  # stale
    assert send(b"[]", sign(b"[]")).status_code == 400
    refund_payment(order, amount=Decimal("5.00"), user=None, reason="Goodwill")
    stripe_api.failure = (402, {"error": {"type": "card_error", "message": "Declined."}})
    with pytest.raises(GatewayError):
        refund_payment(order, amount=Decimal("5.00"), user=None, reason="Goodwill")

    formatter = logging.Formatter("%(name)s %(message)s")
    logged = "\n".join(f"{formatter.format(r)} {r.args!r}" for r in caplog.records)
    assert caplog.records, "the callbacks above are expected to log something"
    assert WEBHOOK_SECRET not in logged
    assert API_KEY not in logged
    for header in signatures:
        assert header not in logged
        assert header.split("v1=")[1] not in logged
