"""Section 9: the callback view, answer by answer, with the built-in hmac gateway."""

import json
import logging
from decimal import Decimal

import pytest
from django.db import DatabaseError
from django.urls import reverse

from orders.models import Order
from orders.models import PaymentStatus as S
from payments.exceptions import PaymentError
from payments.models import EventOutcome, GatewayEvent, PaymentMethod, PaymentTransaction
from payments.services import replay_gateway_event
from tests.factories import PaymentMethodFactory
from tests.payments.callbacks import SECRET, body_for, post
from tests.payments.test_transition_table import ALLOWED, STALE, same_payment

pytestmark = pytest.mark.django_db

EVENT_TYPES = {
    "authorized": "payment.authorized",
    "captured": "payment.captured",
    "declined": "payment.declined",
    "voided": "payment.voided",
    "refunded": "payment.refunded",
}


def money_for(kind, order):
    if kind == "captured":
        return "100.00"
    if kind == "refunded":
        return str(order.net_paid_amount or Decimal("10.00"))
    return None


def test_applied_callback_answers_with_the_new_status(client, make_order):
    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00", transaction="tx_9")

    response = post(client, body)

    assert response.status_code == 200
    assert response.json() == {"status": "applied", "order_status": "paid"}
    event = GatewayEvent.objects.get(event_type="payment.captured")
    assert event.outcome == EventOutcome.APPLIED
    assert event.order == order
    assert event.raw_body.encode() == body
    assert event.attempts == 1
    assert (event.kind, event.amount, event.reference) == ("captured", Decimal("100.000"), "tx_9")


def test_same_event_again_is_a_duplicate(client, make_order):
    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00")
    post(client, body)

    response = post(client, body)

    assert response.status_code == 200
    assert response.json() == {"status": "duplicate"}
    assert PaymentTransaction.objects.filter(order=order, kind="capture").count() == 1
    assert GatewayEvent.objects.filter(event_type="payment.captured").count() == 1


def test_same_money_under_another_event_id_is_a_duplicate(client, make_order):
    order = make_order(S.AUTHORIZED)
    post(client, body_for(order.number, "payment.captured", amount="100.00", transaction="tx_1"))

    response = post(
        client, body_for(order.number, "payment.captured", amount="100.00", transaction="tx_1")
    )

    assert response.json() == {"status": "duplicate"}
    order.refresh_from_db()
    assert order.captured_amount == Decimal("100.00")


def test_event_not_allowed_is_ignored_with_the_reason(client, make_order):
    order = make_order(S.CANCELLED)

    response = post(client, body_for(order.number, "payment.captured", amount="10.00"))

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert "not allowed when the order is Cancelled" in response.json()["reason"]
    assert GatewayEvent.objects.get(event_type="payment.captured").outcome == "ignored"
    order.refresh_from_db()
    assert order.needs_attention


def test_unknown_order_is_404_and_replayable(client, online_method):
    response = post(client, body_for("NOPE1", "payment.authorized", transaction="pi_1"))

    assert response.status_code == 404
    assert "NOPE1" in response.json()["error"]
    event = GatewayEvent.objects.get()
    assert event.outcome == EventOutcome.UNMATCHED

    from orders.services import place_order

    place_order(number="NOPE1", total="10.00", currency="USD", payment_method=online_method)
    result = replay_gateway_event(event)

    assert result.body == {"status": "applied", "order_status": "authorized"}
    event.refresh_from_db()
    assert event.outcome == EventOutcome.APPLIED
    assert event.attempts == 2


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("wrong_secret", "does not match"),
        ("flipped_byte", "does not match"),
        ("stale", "300 seconds old"),
        ("future", "300 seconds ahead"),
        ("no_header", "missing"),
        ("no_v1", "no v1"),
        ("no_timestamp", "no timestamp"),
    ],
)
def test_bad_signature_is_401_and_not_stored(client, make_order, frozen_clock, change, problem):
    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00")
    now = frozen_clock
    kwargs = {"timestamp": now}
    if change == "wrong_secret":
        kwargs["secret"] = "whsec_someone_else"
    elif change == "stale":
        kwargs["timestamp"] = now - 301
    elif change == "future":
        kwargs["timestamp"] = now + 301
    elif change == "no_header":
        kwargs["header"] = ""
    elif change == "no_v1":
        kwargs["header"] = f"t={now}"
    elif change == "no_timestamp":
        kwargs["header"] = "v1=" + "0" * 64
    if change == "flipped_byte":
        from payments.gateways.hmac import sign

        kwargs["header"] = sign(body, SECRET, now)
        body = body.replace(b"100.00", b"900.00")

    response = post(client, body, **kwargs)

    assert response.status_code == 401
    assert problem in response.json()["error"]
    assert not GatewayEvent.objects.exists()
    assert PaymentMethod.objects.get(code="testpay").signature_failures == 1
    order.refresh_from_db()
    assert order.status == S.AUTHORIZED


@pytest.mark.parametrize("skew", [-299, -290, 290, 300])
def test_timestamp_within_tolerance_is_accepted(client, make_order, frozen_clock, skew):
    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00")

    response = post(client, body, timestamp=frozen_clock + skew)

    assert response.status_code == 200


def test_rotation_accepts_either_of_two_signatures(client, make_order):
    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00")

    response = post(client, body, secret=["whsec_new_secret_not_active_yet", SECRET])

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"type": "payment.captured"}', "missing field: id"),
        (
            b'{"id": "e1", "type": "payment.refunded", "order": "X", "currency": "USD",'
            b' "amount": "5.00", "created": 1}',
            "missing field: transaction",
        ),
        (
            b'{"id": "e1", "type": "payment.captured", "order": "X", "currency": "USD",'
            b' "amount": "abc", "transaction": "t", "created": 1}',
            "not a number",
        ),
        (
            b'{"id": "e1", "type": "payment.captured", "order": "X", "currency": "USD",'
            b' "amount": "-5", "transaction": "t", "created": 1}',
            "greater than zero",
        ),
        (
            b'{"id": "e1", "type": "payment.shipped", "order": "X", "currency": "USD",'
            b' "created": 1}',
            "unknown type",
        ),
    ],
)
def test_malformed_callback_is_400_naming_the_problem(client, online_method, body, problem):
    response = post(client, body)

    assert response.status_code == 400
    assert problem in response.json()["error"]
    event = GatewayEvent.objects.get()
    assert event.outcome == EventOutcome.REJECTED
    assert event.raw_body.encode() == body


def test_currency_not_the_orders_is_400_and_rejected(client, make_order):
    order = make_order(S.AUTHORIZED)

    response = post(
        client, body_for(order.number, "payment.captured", amount="100.00", currency="EUR")
    )

    assert response.status_code == 400
    assert "EUR is not the order's currency (USD)" in response.json()["error"]
    assert GatewayEvent.objects.get().outcome == EventOutcome.REJECTED
    assert not PaymentTransaction.objects.filter(order=order, kind="capture").exists()


@pytest.mark.parametrize("case", ["unknown", "inactive", "offline"])
def test_unknown_inactive_or_offline_method_is_404_and_not_stored(client, make_order, case):
    order = make_order(S.AUTHORIZED)
    code = {"unknown": "nope", "inactive": "oldpay", "offline": "check"}[case]
    PaymentMethodFactory(code="oldpay", is_active=False)
    PaymentMethodFactory(code="check", offline=True)

    response = post(client, body_for(order.number, "payment.authorized"), method=code)

    assert response.status_code == 404
    assert "error" in response.json()
    assert not GatewayEvent.objects.exists()


def test_get_is_not_allowed(client, online_method):
    response = client.get(reverse("payments:callback", args=["testpay"]))

    assert response.status_code == 405


def test_processing_crash_is_500_kept_as_failed_and_replayed_once(client, make_order, monkeypatch):

    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00", transaction="tx_boom")
    real_save_status = Order.save_status

    def broken(self):
        raise DatabaseError("disk I/O error")

    monkeypatch.setattr(Order, "save_status", broken)
    response = post(client, body)

    assert response.status_code == 500
    assert "replayed" in response.json()["error"]
    event = GatewayEvent.objects.get(event_type="payment.captured")
    assert event.outcome == EventOutcome.FAILED
    assert "DatabaseError" in event.detail
    assert event.raw_body.encode() == body
    # No partial writes: neither the ledger row nor the running total survived.
    order.refresh_from_db()
    assert order.status == S.AUTHORIZED
    assert order.captured_amount == 0
    assert not PaymentTransaction.objects.filter(order=order, kind="capture").exists()

    monkeypatch.setattr(Order, "save_status", real_save_status)
    assert replay_gateway_event(event).body == {"status": "applied", "order_status": "paid"}
    with pytest.raises(PaymentError, match="only failed or unmatched"):
        replay_gateway_event(GatewayEvent.objects.get(pk=event.pk))
    assert post(client, body).json() == {"status": "duplicate"}

    order.refresh_from_db()
    assert order.captured_amount == Decimal("100.00")
    assert PaymentTransaction.objects.filter(order=order, kind="capture").count() == 1
    assert order.history.filter(status=S.PAID).count() == 1


@pytest.mark.parametrize("status", S.values)
@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_every_event_type_from_every_status_is_applied_or_ignored(client, make_order, status, kind):
    order = make_order(status)

    response = post(
        client,
        body_for(
            order.number,
            EVENT_TYPES[kind],
            amount=money_for(kind, order),
            transaction=same_payment(order) if kind == "declined" else None,
        ),
    )

    expected = (
        "applied"
        if (status, kind) in ALLOWED
        else "stale"
        if (status, kind) in STALE
        else "ignored"
    )
    assert response.status_code == 200
    assert response.json()["status"] == expected


def test_a_thousand_deliveries_of_one_event_count_once(client, make_order):
    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00")
    history_before = order.history.count()

    answers = {json.dumps(post(client, body).json()) for _ in range(1000)}

    assert answers == {
        '{"status": "applied", "order_status": "paid"}',
        '{"status": "duplicate"}',
    }
    assert PaymentTransaction.objects.filter(order=order, kind="capture").count() == 1
    assert order.history.count() == history_before + 1
    assert GatewayEvent.objects.get(event_type="payment.captured").attempts == 1


def test_refund_before_its_capture_is_recorded_when_the_capture_arrives(client, make_order):
    order = make_order(S.AUTHORIZED)

    early = post(client, body_for(order.number, "payment.refunded", amount="30.00"))
    order.refresh_from_db()
    assert early.json()["status"] == "ignored"
    assert order.needs_attention

    post(client, body_for(order.number, "payment.captured", amount="100.00"))

    order.refresh_from_db()
    assert order.status == S.PARTIALLY_PAID
    assert order.net_paid_amount == Decimal("70.00")
    assert not order.needs_attention
    refund_event = GatewayEvent.objects.get(event_type="payment.refunded")
    assert (refund_event.outcome, refund_event.deferred) == ("applied", False)
    statuses = list(order.history.order_by("history_date").values_list("status", flat=True))
    assert statuses[-2:] == [S.PAID, S.PARTIALLY_PAID]


def test_logs_never_contain_the_secret_or_the_signature(client, make_order, caplog, monkeypatch):
    from payments.gateways.hmac import sign

    caplog.set_level(logging.DEBUG)
    order = make_order(S.AUTHORIZED)
    signatures = []
    for secret, body in [
        (SECRET, body_for(order.number, "payment.captured", amount="100.00")),
        ("whsec_wrong", body_for(order.number, "payment.captured", amount="100.00")),
        (SECRET, b"{broken"),
    ]:
        header = sign(body, secret)
        signatures.append(header.split("v1=")[1])
        post(client, body, header=header)
    other = make_order(S.AUTHORIZED)
    monkeypatch.setattr(Order, "save_status", lambda o: 1 / 0)
    header = sign(body_for(other.number, "payment.captured", amount="100.00"), SECRET)
    post(client, body_for(other.number, "payment.captured", amount="100.00"), header=header)

    text = "\n".join(
        record.getMessage() + str(record.exc_info or "") + str(record.exc_text or "")
        for record in caplog.records
    )
    assert caplog.records  # the refusals and the failure were logged
    assert SECRET not in text
    for signature in signatures:
        assert signature not in text
