"""
Fuzzing the callback view: random bytes, random JSON, valid signatures over
garbage, random headers.

Whatever arrives: never a 5xx; without a valid signature nothing changes;
with one, the body is stored (or was already) and the running totals still
equal the ledger. ``ORDERFLOW_FUZZ_EXAMPLES`` raises the number of examples
for a longer local run.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal

import pytest
import stripe
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import payments.inbox
from orders.models import Order
from orders.models import PaymentStatus as S
from payments.gateways.hmac import SIGNATURE_HEADER, sign
from payments.models import GatewayEvent, PaymentTransaction
from tests.factories import PaymentMethodFactory
from tests.payments.callbacks import SECRET

pytestmark = pytest.mark.django_db

STRIPE_SECRET = "whsec_fuzz_only_4e2b"
EXAMPLES = int(os.environ.get("ORDERFLOW_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["", "0", "25.00", "1e999", "-1", "USD", "\x00", "tx_1", "T000001"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=12,
)
hmac_fields = {
    "id": st.sampled_from(["evt_1", "evt_2", "evt_3"]) | st.text(max_size=300),
    "type": st.sampled_from(
        [
            "payment.authorized",
            "payment.captured",
            "payment.declined",
            "payment.voided",
            "payment.refunded",
        ]
    )
    | st.text(max_size=20),
    "order": st.sampled_from(["F1", "F2", "F3", "NOPE"]) | st.text(max_size=80),
    "amount": st.sampled_from(["1.00", "25.00", "100.00", "99999999999.99"])
    | st.from_regex(r"[0-9._e+\-]{0,30}", fullmatch=True)
    | json_values,
    "currency": st.sampled_from(["USD", "usd", "EUR", "JPY"]) | json_values,
    "transaction": st.sampled_from(["tx_1", "tx_2"]) | st.text(max_size=300) | json_values,
    "created": st.integers() | json_values,
}


@pytest.fixture
def world(db):
    """Three orders on the hmac gateway and a Stripe method."""
    from orders.services import place_order
    from tests.factories import bring_to

    method = PaymentMethodFactory(code="testpay", name="Test gateway")
    PaymentMethodFactory(
        code="stripe", name="Stripe", gateway="stripe", webhook_secret=STRIPE_SECRET
    )
    for number, status in [("F1", S.AUTHORIZED), ("F2", S.PAID), ("F3", S.AWAITING_PAYMENT)]:
        order = place_order(number=number, total="100.00", currency="USD", payment_method=method)
        bring_to(order, status)


def snapshot() -> tuple:
    orders = tuple(Order.objects.order_by("pk").values_list("status", "captured_amount"))
    return orders, PaymentTransaction.objects.count(), GatewayEvent.objects.count()


def assert_totals_match_ledger() -> None:
    for order in Order.objects.all():
        sums = {
            kind: order.transactions.filter(kind=kind).aggregate(s=Sum("amount"))["s"] or Decimal(0)
            for kind in ("capture", "refund")
        }
        assert (order.captured_amount, order.refunded_amount) == (
            sums["capture"],
            sums["refund"],
        ), order.number


def send(code: str, body: bytes, headers: dict[str, str]):
    return Client().post(
        reverse("payments:callback", args=[code]),
        body,
        content_type="application/json",
        headers=headers,
    )


@FUZZ
@given(
    code=st.sampled_from(["testpay", "stripe"]),
    body=st.binary(max_size=600) | json_values.map(lambda v: json.dumps(v).encode()),
    header_name=st.sampled_from([SIGNATURE_HEADER, "Stripe-Signature", "X-Other"]),
    header=st.text(max_size=200)
    | st.from_regex(r"t=[0-9_]{0,20},v1=[0-9a-fA-F]{0,70}(,v1=.{0,70})?", fullmatch=True),
)
def test_unsigned_input_never_crashes_and_changes_nothing(world, code, body, header_name, header):
    before = snapshot()

    response = send(code, body, {header_name: header} if header else {})

    assert response.status_code in (401, 413), response.content
    assert "error" in response.json()
    assert snapshot() == before


@FUZZ
@given(body=st.binary(max_size=600) | json_values.map(lambda v: json.dumps(v).encode()))
def test_signed_garbage_is_stored_and_never_a_5xx(world, body):
    response = send("testpay", body, {SIGNATURE_HEADER: sign(body, SECRET)})

    assert response.status_code in (200, 400, 404, 409), response.content
    stored = GatewayEvent.objects.filter(raw_body=payments.inbox.storable_text(body))
    assert stored.exists() or response.json() == {"status": "duplicate"}
    assert_totals_match_ledger()


@FUZZ
@given(
    fields=st.fixed_dictionaries({}, optional=hmac_fields),
    raw_tail=st.sampled_from(["", ', "id": "dup"', ', "x": NaN', ', "n": ' + "9" * 30]),
)
def test_signed_callbacks_with_any_field_values_never_5xx(world, fields, raw_tail):
    text = json.dumps(fields)
    body = (text[:-1] + raw_tail + "}").encode() if text != "{}" and raw_tail else text.encode()

    response = send("testpay", body, {SIGNATURE_HEADER: sign(body, SECRET)})

    assert response.status_code in (200, 400, 404, 409), response.content
    assert_totals_match_ledger()


stripe_object = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["pi_1", "re_1", "ch_1"]) | json_values,
        "object": st.sampled_from(["payment_intent", "refund", "charge"]),
        "amount": st.integers() | json_values,
        "amount_received": st.integers() | json_values,
        "amount_capturable": st.integers() | json_values,
        "currency": st.sampled_from(["usd", "jpy", "kwd"]) | json_values,
        "status": st.sampled_from(["succeeded", "pending", "failed"]) | json_values,
        "payment_intent": st.sampled_from(["pi_1", "pi_2"]) | json_values,
        "metadata": st.fixed_dictionaries({}, optional={"order_number": json_values}) | json_values,
        "refunds": st.fixed_dictionaries(
            {},
            optional={
                "data": st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "id": st.sampled_from(["re_1", "re_2"]) | json_values,
                            "status": st.sampled_from(["succeeded", "pending"]) | json_values,
                            "amount": st.integers() | json_values,
                            "currency": st.sampled_from(["usd"]) | json_values,
                            "created": st.integers() | json_values,
                        },
                    )
                    | json_values,
                    max_size=3,
                )
            },
        )
        | json_values,
    },
)


@FUZZ
@given(
    event_id=st.sampled_from(["evt_1", "evt_2"]) | json_values,
    event_type=st.sampled_from(
        [
            "payment_intent.succeeded",
            "payment_intent.amount_capturable_updated",
            "payment_intent.payment_failed",
            "payment_intent.canceled",
            "charge.refunded",
            "refund.created",
            "refund.updated",
            "customer.created",
        ]
    )
    | json_values,
    obj=stripe_object | json_values,
)
def test_signed_stripe_events_with_any_values_never_5xx(world, event_id, event_type, obj):
    payload = json.dumps({"id": event_id, "type": event_type, "data": {"object": obj}})
    header = stripe.WebhookSignature.generate_signature_header(payload, STRIPE_SECRET)

    response = send("stripe", payload.encode(), {"Stripe-Signature": header})

    assert response.status_code in (200, 400, 404, 409), response.content
    assert_totals_match_ledger()
