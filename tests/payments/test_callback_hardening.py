"""
Callbacks under attack: malformed headers, odd signed bodies, redeliveries.

Whatever arrives, the answer is a 4xx or a stored record, never a 5xx before
storing, and nothing that passed the signature check is lost.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal
from functools import partial
from types import SimpleNamespace

import pytest
import stripe
from django.core.handlers.wsgi import WSGIRequest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, transaction
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from orders.models import Order
from orders.models import PaymentStatus as S
from payments.gateways.hmac import SIGNATURE_HEADER, build_body, sign
from payments.inbox import acknowledge_events, receive_callback, storable_text
from payments.models import EventOutcome, GatewayEvent, PaymentMethod, PaymentTransaction
from payments.services import replay_gateway_event
from payments.views import gateway_callback
from tests.factories import PaymentMethodFactory
from tests.payments.callbacks import SECRET, body_for, post

pytestmark = pytest.mark.django_db

STRIPE_SECRET = "whsec_test_hardening_5c1d"
HEX = "0" * 64


def failures() -> int:
    return PaymentMethod.objects.get(code="testpay").signature_failures


# -- headers: anything unreadable is a bad signature ------------------------------------------


def _headers(now: int) -> list[tuple[str, str]]:
    return [
        ("non-ASCII v1", f"t={now},v1=é"),
        ("non-ASCII v1 of the right length", f"t={now},v1={'é' * 64}"),
        ("t with 400 zeros", "t=1" + "0" * 400 + f",v1={HEX}"),
        ("t with 12+ digits", f"t=1{now:012d},v1={HEX}"),
        ("t with underscores", f"t={'_'.join(str(now))},v1={HEX}"),
        ("t in Arabic-Indic digits", "t=" + "\u0661" * 10 + f",v1={HEX}"),
        ("t with a sign", f"t=+{now},v1={HEX}"),
        ("t with spaces inside", f"t= {now} ,v1={HEX}"),
        ("two timestamps", f"t={now},t={now - 1000},v1={HEX}"),
        ("v1 too short", f"t={now},v1=abc"),
        ("v1 upper-case", f"t={now},v1={'A' * 64}"),
        ("v1 not hex", f"t={now},v1={'g' * 64}"),
        ("NUL byte", f"t={now},v1={HEX}\x00"),
        ("control character", f"t={now},\tv1={HEX}"),
        ("empty item", f"t={now},,v1={HEX}"),
        ("no equals sign", f"t={now},v1"),
        ("only commas", ",,,,"),
        ("a megabyte of header", f"t={now}," + "v1=" + "a" * 1_000_000),
        ("a hundred signatures", f"t={now}," + ",".join([f"v1={HEX}"] * 100)),
        ("binary noise", "\udcff\udcfe" + "x" * 10),
    ]


@pytest.mark.parametrize("case", [name for name, _header in _headers(0)])
def test_unreadable_hmac_signature_header_is_401_counted_and_not_stored(
    client, make_order, frozen_clock, case, caplog
):
    order = make_order(S.AUTHORIZED)
    header = dict(_headers(frozen_clock))[case]
    body = body_for(order.number, "payment.captured", amount="100.00")

    response = Client().post(
        reverse("payments:callback", args=["testpay"]),
        body,
        content_type="application/json",
        headers={SIGNATURE_HEADER: header},
    )

    assert response.status_code == 401, case
    assert "Invalid signature" in response.json()["error"]
    assert failures() == 1
    assert not GatewayEvent.objects.exists()
    order.refresh_from_db()
    assert order.status == S.AUTHORIZED
    assert any("Refused a callback" in r.getMessage() for r in caplog.records)


@pytest.fixture
def stripe_method(db) -> PaymentMethod:
    return PaymentMethodFactory(
        code="stripe", name="Stripe", gateway="stripe", webhook_secret=STRIPE_SECRET
    )


@pytest.mark.parametrize("case", [name for name, _header in _headers(0)])
def test_unreadable_stripe_signature_header_is_401_and_not_stored(
    stripe_method, frozen_clock, case
):
    header = dict(_headers(frozen_clock))[case]
    body = json.dumps({"id": "evt_1", "type": "customer.created", "data": {"object": {}}})

    response = Client().post(
        reverse("payments:callback", args=["stripe"]),
        body,
        content_type="application/json",
        headers={"Stripe-Signature": header},
    )

    assert response.status_code == 401, case
    stripe_method.refresh_from_db()
    assert stripe_method.signature_failures == 1
    assert not GatewayEvent.objects.exists()


def test_debug_error_page_never_shows_the_secret_or_the_signature(
    client, make_order, settings, monkeypatch
):
    """A crash deep inside the signature check, on a server running with DEBUG on."""
    import payments.gateways.hmac

    settings.DEBUG = True
    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00")
    header = sign(body, SECRET)
    # The stdlib's hmac code then fails while it holds the key (a C-level
    # KeyError, so no frame of the test's own appears on the page).
    broken = SimpleNamespace(sha256=partial({}.__getitem__, "no digest"))
    monkeypatch.setattr(payments.gateways.hmac, "hashlib", broken)

    response = Client(raise_request_exception=False).post(
        reverse("payments:callback", args=["testpay"]),
        body,
        content_type="application/json",
        headers={SIGNATURE_HEADER: header},
    )

    assert response.status_code == 500
    page = response.content.decode()
    assert "no digest" in page  # the technical page, with its frames, was rendered
    assert "compute_signature" in page
    assert SECRET not in page
    assert header.split("v1=")[1] not in page


# -- signed bodies: stored, or stored as rejected, and answered 400 ----------------------------


def _hmac_body(order_number: str, **changes) -> dict:
    data = {
        "id": "evt_odd_1",
        "type": "payment.captured",
        "order": order_number,
        "amount": "25.00",
        "currency": "USD",
        "transaction": "tx_odd_1",
        "created": 1764000000,
    }
    data.update(changes)
    return data


def _odd_bodies(number: str) -> list[tuple[str, bytes, str]]:
    def dumped(**changes) -> bytes:
        return json.dumps(_hmac_body(number, **changes)).encode()

    deep = b'{"id": "e", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return [
        ("UTF-16 JSON", json.dumps(_hmac_body(number)).encode("utf-16"), "not UTF-8"),
        ("raw NUL byte", dumped()[:-1] + b"\x00}", "not valid JSON"),
        ("NUL in id", dumped(id="evt\u0000x"), "field id contains control characters"),
        ("id over 255 characters", dumped(id="e" * 256), "field id is longer than 255"),
        ("nested 100,000 deep", deep, "nested too deeply"),
        ("created with 5,000 digits", dumped()[:-1] + b', "x": ' + b"9" * 5000 + b"}", "digits"),
        ("amount 1e999999999999999999", dumped(amount="1e999999999999999999"), "amount"),
        ("amount 1e-999999999999999999", dumped(amount="1e-999999999999999999"), "amount"),
        ("NUL in the order number", dumped(order="A\u00001"), "field order contains control"),
        ("transaction over 255", dumped(transaction="t" * 300), "transaction is longer than"),
        ("amount with underscores", dumped(amount="1_0.00"), "amount '1_0.00' is not"),
        ("amount in Arabic-Indic digits", dumped(amount="\u0661\u0660.00"), "is not a number"),
        ("amount as a JSON number", dumped(amount=25), "decimal string"),
        ("duplicate keys", dumped()[:-1] + b', "amount": "99.00"}', "appears twice"),
        ("NaN", dumped()[:-1] + b', "x": NaN}', "NaN is not a JSON number"),
        ("created as a float", dumped(created=1.5e9), "created must be a whole number"),
        ("created negative", dumped(created=-5), "created must be a whole number"),
        ("lone surrogate in type", dumped(type="\udcff"), "control characters"),
        ("empty body", b"", "not valid JSON"),
    ]


@pytest.mark.parametrize("case", [name for name, _body, _problem in _odd_bodies("X")])
def test_signed_odd_body_is_stored_and_answered_400_naming_the_problem(client, make_order, case):
    order = make_order(S.AUTHORIZED)
    _name, body, problem = next(b for b in _odd_bodies(order.number) if b[0] == case)

    response = post(client, body)

    assert response.status_code == 400, response.content
    assert problem in response.json()["error"]
    event = GatewayEvent.objects.get()
    assert event.outcome == EventOutcome.REJECTED
    assert event.raw_body == storable_text(body)
    order.refresh_from_db()
    assert (order.status, order.captured_amount) == (S.AUTHORIZED, 0)
    # The same bytes again are the same stored row, answered the same way.
    assert post(client, body).status_code == 400
    assert GatewayEvent.objects.count() == 1


def test_stored_text_keeps_readable_bodies_exactly_and_escapes_the_rest():
    assert storable_text(b'{"a": "\xc3\xa9"}') == '{"a": "é"}'
    assert storable_text(b"a\x00b\xffc") == "a\\x00b\\xffc"


def test_running_total_that_would_overflow_its_column_is_rejected_not_a_crash(client, make_order):
    order = make_order(S.AUTHORIZED, total="99999999999.00")
    answers = [
        post(
            client,
            body_for(order.number, "payment.captured", amount="99999999999.00"),
        ).status_code
        for _ in range(11)
    ]

    assert answers[:10] == [200] * 10
    assert answers[10] == 400
    last = GatewayEvent.objects.order_by("-id").first()
    assert last.outcome == EventOutcome.REJECTED
    assert "past what can be stored" in last.detail
    order.refresh_from_db()
    assert order.captured_amount == Decimal("999999999990.000")
    assert PaymentTransaction.objects.filter(order=order, kind="capture").count() == 10


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda e: e.update(id="evt\u0000"), "field id contains control characters"),
        (lambda e: e.update(type="x" * 101), "field type is longer than 100"),
        (
            lambda e: e["data"]["object"].update(amount_received=10**30),
            "more than 18 digits",
        ),
        (
            lambda e: e["data"]["object"].update(amount_received=10**17),
            "is too large",
        ),
        (
            lambda e: e["data"]["object"]["metadata"].update(order_number="A\u0000"),
            "metadata.order_number contains control characters",
        ),
        (
            lambda e: e["data"]["object"]["metadata"].update(order_number="A" * 65),
            "longer than 64",
        ),
    ],
)
def test_signed_odd_stripe_body_is_stored_and_answered_400(stripe_method, mutate, problem):
    event = {
        "id": "evt_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": "pi_1",
                "object": "payment_intent",
                "amount_received": 1000,
                "currency": "usd",
                "metadata": {"order_number": "T1"},
            }
        },
    }
    mutate(event)
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, STRIPE_SECRET)

    response = Client().post(
        reverse("payments:callback", args=["stripe"]),
        body,
        content_type="application/json",
        headers={"Stripe-Signature": header},
    )

    assert response.status_code == 400
    assert problem in response.json()["error"]
    assert GatewayEvent.objects.get().outcome == EventOutcome.REJECTED


# -- unfinished events flag their order and are picked up ----------------------------------------


def test_failed_event_flags_its_order_until_replayed(client, make_order, monkeypatch):

    order = make_order(S.AUTHORIZED)
    real = Order.save_status
    monkeypatch.setattr(Order, "save_status", lambda o: 1 / 0)

    assert post(
        client, body_for(order.number, "payment.captured", amount="100.00")
    ).status_code == (500)

    order.refresh_from_db()
    assert order.needs_attention
    assert any("failed to process" in reason for reason in order.attention_reasons)
    monkeypatch.setattr(Order, "save_status", real)
    replay_gateway_event(GatewayEvent.objects.get())
    order.refresh_from_db()
    assert (order.status, order.needs_attention) == (S.PAID, False)


def _left_received(client, order, monkeypatch, *, age: timedelta) -> GatewayEvent:
    """Store a callback whose processing never ran, as when its worker was killed."""
    import payments.inbox

    with monkeypatch.context() as patched:
        patched.setattr(payments.inbox, "process_event", lambda event, **kwargs: None)
        with pytest.raises(AttributeError):  # the view had no answer to send
            post(client, body_for(order.number, "payment.captured", amount="100.00"))
    event = GatewayEvent.objects.get(outcome=EventOutcome.RECEIVED)
    GatewayEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - age)
    return event


def test_event_left_received_flags_its_order_and_is_replayed_without_filters(
    client, make_order, monkeypatch
):
    order = make_order(S.AUTHORIZED)
    event = _left_received(client, order, monkeypatch, age=timedelta(minutes=6))
    order.refresh_from_db()
    assert order.needs_attention
    assert event.order_id == order.pk

    call_command("replay_gateway_events", stdout=io.StringIO())

    event.refresh_from_db()
    order.refresh_from_db()
    assert event.outcome == EventOutcome.APPLIED
    assert (order.status, order.needs_attention) == (S.PAID, False)


def test_event_received_moments_ago_is_left_to_its_worker(client, make_order, monkeypatch):
    order = make_order(S.AUTHORIZED)
    event = _left_received(client, order, monkeypatch, age=timedelta(minutes=1))
    order.refresh_from_db()
    assert not order.needs_attention

    out = io.StringIO()
    call_command("replay_gateway_events", stdout=out)

    assert "No gateway events to replay" in out.getvalue()
    event.refresh_from_db()
    assert event.outcome == EventOutcome.RECEIVED


# -- a final outcome is never downgraded --------------------------------------------------------


def test_redelivery_hitting_a_database_error_keeps_the_event_applied(
    client, make_order, monkeypatch
):
    import payments.inbox

    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00")
    assert post(client, body).json()["status"] == "applied"

    def broken(**kwargs):
        raise DatabaseError("could not serialize access")

    monkeypatch.setattr(payments.inbox, "audit_context", broken)
    response = post(client, body)

    assert response.status_code == 200
    assert response.json() == {"status": "duplicate"}
    event = GatewayEvent.objects.get()
    assert event.outcome == EventOutcome.APPLIED
    assert PaymentTransaction.objects.filter(order=order, kind="capture").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_inbox_write_cannot_be_folded_into_a_callers_transaction(make_order):
    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00")

    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        receive_callback(
            method_code="testpay", body=body, headers={SIGNATURE_HEADER: sign(body, SECRET)}
        )

    assert not GatewayEvent.objects.exists()


# -- the same event id with another body ---------------------------------------------------------


def test_same_event_id_with_another_body_is_409_kept_and_flags_the_order(client, make_order):
    order = make_order(S.AUTHORIZED)
    first = body_for(order.number, "payment.captured", amount="40.00", event_id="evt_7")
    second = body_for(order.number, "payment.captured", amount="100.00", event_id="evt_7")
    assert post(client, first).json()["status"] == "applied"

    response = post(client, second)

    assert response.status_code == 409
    assert "evt_7" in response.json()["error"]
    conflict = GatewayEvent.objects.get(outcome=EventOutcome.CONFLICT)
    assert conflict.raw_body.encode() == second
    assert conflict.order == order
    order.refresh_from_db()
    assert order.captured_amount == Decimal("40.00")
    assert order.needs_attention
    assert any("contradicts" in reason for reason in order.attention_reasons)
    # Delivered again, the conflicting body is the same stored row.
    assert post(client, second).status_code == 409
    assert GatewayEvent.objects.filter(outcome=EventOutcome.CONFLICT).count() == 1

    acknowledge_events(GatewayEvent.objects.filter(pk=conflict.pk), user=None)
    order.refresh_from_db()
    assert not order.needs_attention


def test_same_event_id_saying_the_same_in_other_bytes_is_a_duplicate(client, make_order):
    order = make_order(S.AUTHORIZED)
    compact = build_body(
        event_id="evt_8",
        event_type="payment.captured",
        order=order.number,
        currency="USD",
        amount="100.00",
        transaction="tx_8",
        created=1764000000,
    )
    spaced = json.dumps(json.loads(compact), indent=4).encode()
    post(client, compact)

    response = post(client, spaced)

    assert response.json() == {"status": "duplicate"}
    assert not GatewayEvent.objects.filter(outcome=EventOutcome.CONFLICT).exists()


# -- chunked bodies -------------------------------------------------------------------------------


def _chunked_request(body: bytes, *, terminated: bool) -> WSGIRequest:
    """A request as a WSGI server hands it over after de-chunking: no Content-Length."""
    environ = RequestFactory()._base_environ(
        PATH_INFO=reverse("payments:callback", args=["testpay"]),
        REQUEST_METHOD="POST",
        CONTENT_TYPE="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        HTTP_X_ORDERFLOW_SIGNATURE=sign(body, SECRET),
    )
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = io.BytesIO(body)
    if terminated:
        environ["wsgi.input_terminated"] = True
    return WSGIRequest(environ)


def test_chunked_body_from_a_dechunking_server_is_read(make_order):
    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00")

    response = gateway_callback(_chunked_request(body, terminated=True), method_code="testpay")

    assert response.status_code == 200
    assert json.loads(response.content)["status"] == "applied"


def test_chunked_body_that_cannot_be_read_is_411_and_not_counted(make_order):
    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00")

    response = gateway_callback(_chunked_request(body, terminated=False), method_code="testpay")

    assert response.status_code == 411
    assert failures() == 0
    assert not GatewayEvent.objects.exists()


def test_body_over_the_size_limit_is_413_and_not_counted(client, online_method, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = post(client, b"{" + b" " * 2000 + b"}")

    assert response.status_code == 413
    assert failures() == 0


def test_replay_command_reports_events_that_still_fail(client, make_order, monkeypatch):

    order = make_order(S.AUTHORIZED)
    monkeypatch.setattr(Order, "save_status", lambda o: 1 / 0)
    post(client, body_for(order.number, "payment.captured", amount="100.00"))

    with pytest.raises(CommandError, match="still failed"):
        call_command("replay_gateway_events", stdout=io.StringIO())


@pytest.mark.parametrize("status", [[], {}, 5, None])
def test_refund_list_item_with_an_odd_status_is_400_not_a_crash(stripe_method, status):
    charge = {
        "id": "ch_1",
        "object": "charge",
        "currency": "usd",
        "payment_intent": "pi_1",
        "metadata": {"order_number": "T1"},
        "refunds": {"object": "list", "data": [{"id": "re_1", "status": status, "amount": 5}]},
    }
    body = json.dumps({"id": "evt_odd", "type": "charge.refunded", "data": {"object": charge}})
    header = stripe.WebhookSignature.generate_signature_header(body, STRIPE_SECRET)

    response = Client().post(
        reverse("payments:callback", args=["stripe"]),
        body,
        content_type="application/json",
        headers={"Stripe-Signature": header},
    )

    assert response.status_code == 400
    assert "status" in response.json()["error"]
    assert GatewayEvent.objects.get().outcome == EventOutcome.REJECTED
