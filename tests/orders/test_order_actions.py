"""The order page's money actions, through the admin as a browser (or a forger) posts them."""

import re
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.test import Client, override_settings
from django.urls import reverse

from orders.models import Order
from orders.models import PaymentStatus as S
from payments.models import (
    EventOutcome,
    GatewayEvent,
    PaymentRequest,
    PaymentTransaction,
    RequestStatus,
    TransactionKind,
)
from payments.services import record_offline_payment
from tests.factories import PaymentMethodFactory, bring_to
from tests.orders.staff import staff_with
from tests.payments import conftest as payment_fixtures
from tests.payments.callbacks import body_for
from tests.payments.callbacks import post as post_callback

pytestmark = pytest.mark.django_db

# The built-in gateway's outbound calls, counted (a fixture of the payments tests).
gateway_calls = payment_fixtures.gateway_calls

TOKEN = re.compile(r'name="token" value="([^"]+)"')


def url(order_or_pk, name: str) -> str:
    pk = getattr(order_or_pk, "pk", order_or_pk)
    return reverse(f"admin:orders_order_{name}", args=[pk])


def order_page(order) -> str:
    return reverse("admin:orders_order_change", args=[order.pk])


def logged_in(*perms: str) -> Client:
    client = Client()
    client.force_login(staff_with(*perms))
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def form_errors(response) -> list[str]:
    form = response.context["form"]
    return [str(e) for errors in form.errors.values() for e in errors]


def token_of(response) -> str:
    return TOKEN.search(response.text).group(1)


def ledger(order, kind: str) -> list[tuple[str, Decimal]]:
    rows = PaymentTransaction.objects.filter(order=order, kind=kind).order_by("id")
    return list(rows.values_list("reference", "amount"))


def reload(order) -> Order:
    return Order.objects.get(pk=order.pk)


@pytest.fixture
def cheque_order(make_order, offline_method):
    return make_order(method=offline_method)


@pytest.fixture
def clerk():
    return logged_in("view_order", "record")


@pytest.fixture
def cashier():
    return logged_in("view_order", "capture", "refund")


# -- record payment / refund (offline) -------------------------------------------------


def test_clerk_records_a_cheque_payment(clerk, cheque_order):
    page = clerk.get(url(cheque_order, "record_payment"))
    assert page.status_code == 200
    assert page.context["form"]["amount"].value() == "100.00"  # the outstanding balance

    response = clerk.post(
        url(cheque_order, "record_payment"), {"amount": "40.00", "reference": "CHQ-1001"}
    )

    assert response.status_code == 302
    assert response.url == order_page(cheque_order)
    assert messages_of(response) == [
        f"Recorded a payment of 40.00 USD (CHQ-1001) on order {cheque_order.number}; "
        "its payment status is now Partially paid."
    ]
    assert ledger(cheque_order, TransactionKind.CAPTURE) == [("CHQ-1001", Decimal("40.000"))]
    assert reload(cheque_order).status == S.PARTIALLY_PAID


def test_the_same_cheque_posted_twice_is_recorded_once(clerk, cheque_order):
    data = {"amount": "40.00", "reference": "CHQ-1001"}
    clerk.post(url(cheque_order, "record_payment"), data)

    again = clerk.post(url(cheque_order, "record_payment"), data)

    assert again.status_code == 302
    assert "nothing was recorded again" in " ".join(messages_of(again))
    assert ledger(cheque_order, TransactionKind.CAPTURE) == [("CHQ-1001", Decimal("40.000"))]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"amount": "40.00", "reference": ""}, "This field is required."),
        ({"amount": "40.00", "reference": "   "}, "This field is required."),
        ({"amount": "-5", "reference": "C1"}, "The amount must be greater than zero."),
        ({"amount": "0", "reference": "C1"}, "The amount must be greater than zero."),
        ({"amount": "abc", "reference": "C1"}, "The amount 'abc' is not a number."),
        ({"amount": "NaN", "reference": "C1"}, "The amount must be greater than zero."),
        ({"amount": "1e400", "reference": "C1"}, "The amount is too large."),
        ({"amount": "1e999999999", "reference": "C1"}, "The amount is too large."),
        ({"amount": "1e-999999999", "reference": "C1"}, "has more decimals than USD allows"),
        ({"amount": "40.0000000000000000000000000001", "reference": "C1"}, "more decimals"),
        ({"amount": "10.001", "reference": "C1"}, "has more decimals than USD allows"),
        ({"amount": "", "reference": "C1"}, "This field is required."),
        ({"reference": "C1"}, "This field is required."),
        ({"amount": "100.01", "reference": "C1"}, "is more than what is outstanding"),
        ({"amount": "40", "reference": "C\u200b1"}, "control or invisible characters"),
    ],
)
def test_bad_payment_input_is_a_form_error_and_records_nothing(clerk, cheque_order, data, error):
    response = clerk.post(url(cheque_order, "record_payment"), data)

    assert response.status_code == 200
    assert any(error in message for message in form_errors(response)), form_errors(response)
    assert not PaymentTransaction.objects.filter(order=cheque_order).exists()
    # What was typed is kept.
    if data.get("amount"):
        assert response.context["form"]["amount"].value() == data["amount"]


def test_record_refund_needs_a_reason_and_stays_within_what_was_received(clerk, cheque_order):
    record_offline_payment(cheque_order, amount="60.00", reference="CHQ-1", user=None)

    no_reason = clerk.post(
        url(cheque_order, "record_refund"), {"amount": "10.00", "reference": "RF-1"}
    )
    too_much = clerk.post(
        url(cheque_order, "record_refund"),
        {"amount": "60.01", "reference": "RF-1", "reason": "returned goods"},
    )
    done = clerk.post(
        url(cheque_order, "record_refund"),
        {"amount": "60.00", "reference": "RF-1", "reason": "returned goods"},
    )

    assert "This field is required." in form_errors(no_reason)
    assert "more than the refundable balance" in " ".join(form_errors(too_much))
    assert done.status_code == 302
    assert messages_of(done)[-1].endswith("its payment status is now Refunded.")
    assert ledger(cheque_order, TransactionKind.REFUND) == [("RF-1", Decimal("60.000"))]


def test_viewer_posting_a_payment_directly_is_refused(cheque_order):
    viewer = logged_in("view_order")

    get = viewer.get(url(cheque_order, "record_payment"))
    post = viewer.post(url(cheque_order, "record_payment"), {"amount": "1", "reference": "C1"})

    assert (get.status_code, post.status_code) == (403, 403)
    assert not PaymentTransaction.objects.filter(order=cheque_order).exists()


def test_permission_to_record_without_seeing_orders_is_refused(cheque_order):
    blind = logged_in("record")

    response = blind.post(url(cheque_order, "record_payment"), {"amount": "1", "reference": "C1"})

    assert response.status_code == 403
    assert not PaymentTransaction.objects.filter(order=cheque_order).exists()


def test_recording_money_by_hand_on_an_online_order_is_not_an_action_of_it(make_order):
    order = make_order(S.AWAITING_PAYMENT)
    client = logged_in("view_order", "record")

    response = client.post(url(order, "record_payment"), {"amount": "10", "reference": "C1"})

    assert response.status_code == 404
    assert not PaymentTransaction.objects.filter(order=order).exists()


@pytest.mark.parametrize("pk", ["999999", "abc", "1%2F2", "-1"])
def test_unknown_or_odd_order_ids_are_404(clerk, cheque_order, pk):
    response = clerk.post(f"/admin/orders/order/{pk}/record-payment/", {"amount": "1"})

    assert response.status_code == 404


def test_other_methods_than_get_and_post_are_refused(clerk, cheque_order):
    assert clerk.put(url(cheque_order, "record_payment")).status_code == 405


def test_action_not_possible_now_sends_back_to_the_order_with_the_reason(clerk, cheque_order):
    record_offline_payment(cheque_order, amount="100.00", reference="CHQ-1", user=None)

    response = clerk.get(url(cheque_order, "record_payment"))

    assert response.status_code == 302
    assert response.url == order_page(cheque_order)
    assert messages_of(response) == ["Nothing is outstanding: the order is paid in full."]


# -- capture, void, refund (online) ------------------------------------------------------


def test_capture_part_of_an_authorization_and_the_same_click_again(
    cashier, make_order, gateway_calls
):
    order = make_order(S.AUTHORIZED)
    form = cashier.get(url(order, "capture"))
    token = token_of(form)
    assert "Capturable now:" in form.text and "100.00 USD" in form.text

    first = cashier.post(url(order, "capture"), {"amount": "40.00", "token": token})
    again = cashier.post(url(order, "capture"), {"amount": "40.00", "token": token})

    assert first.status_code == again.status_code == 302
    assert messages_of(first) == [
        f"Captured 40.00 USD on order {order.number}; its payment status is now Partially paid."
    ]
    assert "was already submitted" in messages_of(again)[-1]
    assert "Nothing was sent again." in messages_of(again)[-1]
    assert len(gateway_calls.keys("capture")) == 1
    assert [amount for _, amount in ledger(order, TransactionKind.CAPTURE)] == [Decimal("40.000")]


def test_capture_above_the_hold_is_a_form_error_and_keeps_the_input(
    cashier, make_order, gateway_calls
):
    order = make_order(S.AUTHORIZED)
    token = token_of(cashier.get(url(order, "capture")))

    response = cashier.post(url(order, "capture"), {"amount": "100.01", "token": token})

    assert response.status_code == 200
    assert "is more than the 100.00 USD that can be captured" in " ".join(form_errors(response))
    assert response.context["form"]["amount"].value() == "100.01"
    assert token_of(response) == token  # nothing was requested: the intent is the same
    assert gateway_calls.calls == []


@pytest.mark.parametrize("token", ["", "short", "x" * 65, "bad token with spaces!"])
def test_missing_or_forged_token_moves_nothing(cashier, make_order, gateway_calls, token):
    order = make_order(S.AUTHORIZED)

    response = cashier.post(url(order, "capture"), {"amount": "10.00", "token": token})

    assert response.status_code == 200
    assert form_errors(response)
    assert gateway_calls.calls == []
    assert not PaymentRequest.objects.exists()


def test_gateway_refusal_shows_on_the_form_with_a_new_token(cashier, make_order):
    order = make_order(S.AUTHORIZED)
    token = token_of(cashier.get(url(order, "capture")))

    with override_settings(ORDERFLOW_HMAC_SIMULATED_OUTCOME="decline"):
        response = cashier.post(url(order, "capture"), {"amount": "10.00", "token": token})

    assert response.status_code == 200
    assert "The test gateway declined the capture." in form_errors(response)
    assert token_of(response) != token
    assert PaymentRequest.objects.get().status == RequestStatus.FAILED
    assert reload(order).status == S.AUTHORIZED


def test_void_asks_for_confirmation_then_cancels(cashier, make_order, gateway_calls):
    order = make_order(S.AUTHORIZED)
    form = cashier.get(url(order, "void"))
    assert "amount" not in form.context["form"].fields

    response = cashier.post(url(order, "void"), {"token": token_of(form)})

    assert response.status_code == 302
    assert messages_of(response) == [
        f"Voided the authorization of order {order.number}; its payment status is now Cancelled."
    ]
    assert reload(order).status == S.CANCELLED
    assert len(gateway_calls.keys("void")) == 1


def test_partial_refund_then_the_rest(cashier, make_order):
    order = make_order(S.PAID)

    token = token_of(cashier.get(url(order, "refund")))
    first = cashier.post(
        url(order, "refund"), {"amount": "30.00", "reason": "one item back", "token": token}
    )
    rest = cashier.get(url(order, "refund"))
    assert rest.context["form"]["amount"].value() == "70.00"
    second = cashier.post(
        url(order, "refund"), {"amount": "70.00", "reason": "all back", "token": token_of(rest)}
    )

    assert messages_of(first)[-1].endswith("its payment status is now Partially paid.")
    assert messages_of(second)[-1].endswith("its payment status is now Refunded.")
    assert [a for _, a in ledger(order, TransactionKind.REFUND)] == [
        Decimal("30.000"),
        Decimal("70.000"),
    ]
    assert cashier.get(url(order, "refund")).status_code == 302  # nothing left


def test_refund_needs_a_reason(cashier, make_order, gateway_calls):
    order = make_order(S.PAID)
    token = token_of(cashier.get(url(order, "refund")))

    response = cashier.post(url(order, "refund"), {"amount": "10.00", "token": token})

    assert "This field is required." in form_errors(response)
    assert gateway_calls.calls == []


def test_whole_balance_method_shows_the_amount_and_refuses_a_part(make_order, gateway_calls):
    method = PaymentMethodFactory(code="wholeonly", supports_partial_refunds=False)
    order = make_order(S.PAID, method=method)
    client = logged_in("view_order", "refund")
    form = client.get(url(order, "refund"))
    assert 'type="hidden" name="amount" value="100.00"' in form.text
    assert "This method refunds only the whole balance." in form.text

    forged = client.post(
        url(order, "refund"), {"amount": "10.00", "reason": "x", "token": token_of(form)}
    )

    assert "only refunds the whole balance (100.00 USD)" in " ".join(form_errors(forged))
    assert 'type="hidden" name="amount" value="100.00"' in forged.text  # the balance again
    assert gateway_calls.calls == []


def test_method_without_refunds_refuses_a_forged_refund(make_order, gateway_calls):
    method = PaymentMethodFactory(
        code="norefund", name="Stripe", supports_refunds=False, supports_partial_refunds=False
    )
    order = make_order(S.PAID, method=method)
    client = logged_in("view_order", "refund")

    page = client.get(url(order, "refund"))
    forged = client.post(
        url(order, "refund"), {"amount": "10.00", "reason": "x", "token": "t" * 32}
    )

    assert messages_of(page) == ["This Stripe method does not support refunds."]
    assert "Stripe does not support refunds." in form_errors(forged)
    assert gateway_calls.calls == []


@pytest.mark.parametrize(
    ("perms", "action", "status"),
    [
        (("view_order", "refund"), "capture", S.AUTHORIZED),
        (("view_order", "refund"), "void", S.AUTHORIZED),
        (("view_order", "capture"), "refund", S.PAID),
        (("view_order",), "capture", S.AUTHORIZED),
    ],
)
def test_each_online_action_is_refused_without_its_permission(
    make_order, gateway_calls, perms, action, status
):
    order = make_order(status)
    client = logged_in(*perms)
    data = {"amount": "10.00", "reason": "x", "token": "t" * 32}

    assert client.get(url(order, action)).status_code == 403
    assert client.post(url(order, action), data).status_code == 403
    assert gateway_calls.calls == []
    assert reload(order).status == status


def test_capture_on_a_paid_order_is_a_form_error(cashier, make_order, gateway_calls):
    order = make_order(S.PAID)

    response = cashier.post(url(order, "capture"), {"amount": "1.00", "token": "t" * 32})

    assert response.status_code == 200
    assert "Only an authorized payment can be captured" in " ".join(form_errors(response))
    assert gateway_calls.calls == []


# -- the gateway event behind an attention reason ---------------------------------------


@pytest.fixture
def flagged_order(make_order):
    """A declined order the gateway then reports refunded: an ignored event flags it."""
    order = bring_to(make_order(), S.DECLINED)
    response = post_callback(Client(), body_for(order.number, "payment.refunded", amount="10.00"))
    assert response.status_code == 200
    return reload(order)


def event_url(order, event, name: str) -> str:
    return reverse(f"admin:orders_order_{name}_event", args=[order.pk, event.pk])


def test_acknowledge_from_the_order_page(flagged_order):
    event = GatewayEvent.objects.get(order=flagged_order)
    client = logged_in("view_order", "acknowledge")
    page = client.get(order_page(flagged_order))
    assert event_url(flagged_order, event, "acknowledge") in page.text

    response = client.post(event_url(flagged_order, event, "acknowledge"))

    assert response.status_code == 302
    assert response.url == order_page(flagged_order)
    assert "no longer needs attention" in messages_of(response)[-1]
    assert not reload(flagged_order).needs_attention


def test_acknowledge_is_refused_without_permission_or_by_get(flagged_order):
    event = GatewayEvent.objects.get(order=flagged_order)
    viewer = logged_in("view_order")
    allowed = logged_in("view_order", "acknowledge")

    assert (
        event_url(flagged_order, event, "acknowledge")
        not in viewer.get(order_page(flagged_order)).text
    )
    assert viewer.post(event_url(flagged_order, event, "acknowledge")).status_code == 403
    assert allowed.get(event_url(flagged_order, event, "acknowledge")).status_code == 405
    assert reload(flagged_order).needs_attention


def test_event_of_another_order_is_404(flagged_order, make_order):
    event = GatewayEvent.objects.get(order=flagged_order)
    other = make_order()
    client = logged_in("view_order", "acknowledge")

    response = client.post(event_url(other, event, "acknowledge"))

    assert response.status_code == 404
    assert reload(flagged_order).needs_attention


@pytest.mark.parametrize(
    ("next_url", "lands_on"),
    [
        ("https://evil.example/", None),
        ("//evil.example/", None),
        ("javascript:alert(1)", None),
        ("/admin/orders/order/?attention=yes", "/admin/orders/order/?attention=yes"),
    ],
)
def test_next_is_followed_only_within_the_site(flagged_order, next_url, lands_on):
    event = GatewayEvent.objects.get(order=flagged_order)
    client = logged_in("view_order", "acknowledge")

    response = client.post(event_url(flagged_order, event, "acknowledge"), {"next": next_url})

    assert response.status_code == 302
    assert response.url == (lands_on or order_page(flagged_order))


def test_replay_a_failed_event_from_the_order_page(make_order):
    order = make_order(S.AWAITING_PAYMENT)
    body = body_for(order.number, "payment.captured", amount="100.00")
    assert post_callback(Client(), body).status_code == 200
    event = GatewayEvent.objects.get(order=order)
    # As if the processing had crashed after the event was stored.
    GatewayEvent.objects.filter(pk=event.pk).update(outcome=EventOutcome.FAILED)
    client = logged_in("view_order", "replay")
    assert event_url(order, event, "replay") in client.get(order_page(order)).text

    refused = logged_in("view_order").post(event_url(order, event, "replay"))
    response = client.post(event_url(order, event, "replay"))

    assert refused.status_code == 403
    assert response.status_code == 302
    assert response.url == order_page(order)
    assert GatewayEvent.objects.get(pk=event.pk).outcome != EventOutcome.FAILED
    assert len(ledger(order, TransactionKind.CAPTURE)) == 1
