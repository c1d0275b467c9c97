"""Which money actions the order page offers, and the reason given for each one it does not."""

from decimal import Decimal

import pytest
from django.urls import NoReverseMatch, reverse

import payments.availability
from orders.models import PaymentStatus as S
from orders.services import override_status
from payments.availability import held_amount, money_actions
from payments.gateways import MoneyFact
from payments.models import CaptureMode, PaymentRequest, RequestAction
from payments.services import apply_gateway_event, new_request_token, record_offline_payment
from tests.factories import PaymentMethodFactory
from tests.orders.staff import staff_with

pytestmark = pytest.mark.django_db

ALL_ONLINE = ("view_order", "capture", "refund")


def state(actions) -> dict[str, tuple[bool, str, Decimal | None]]:
    """The money actions (Change status, a link to another page, aside)."""
    return {a.name: (a.allowed, a.why_not, a.limit) for a in actions if a.name != "change_status"}


def pending(order, action: str, amount: str) -> PaymentRequest:
    return PaymentRequest.objects.create(
        order=order,
        payment_method=order.payment_method,
        action=action,
        amount=Decimal(amount),
        currency=order.currency,
        token=new_request_token(),
        checkout_reference="ref_1",
    )


# -- offline methods -----------------------------------------------------------------


def test_offline_awaiting_order_offers_record_payment_of_the_total(make_order, offline_method):
    order = make_order(method=offline_method)
    clerk = staff_with("view_order", "record")

    actions = money_actions(order, clerk)

    assert state(actions) == {
        "record_payment": (True, "", Decimal("100.000")),
        "record_refund": (False, "Nothing left to refund.", None),
    }
    assert actions.permitted_any


def test_offline_partly_paid_order_offers_the_rest_and_a_refund_of_what_came(
    make_order, offline_method
):
    order = make_order(method=offline_method)
    order = record_offline_payment(order, amount="40.00", reference="CHQ-1", user=None).order

    actions = money_actions(order, staff_with("record"))

    assert state(actions) == {
        "record_payment": (True, "", Decimal("60.000")),
        "record_refund": (True, "", Decimal("40.000")),
    }


def test_offline_paid_order_has_nothing_outstanding(make_order, offline_method):
    order = make_order(method=offline_method)
    order = record_offline_payment(order, amount="100.00", reference="CHQ-1", user=None).order

    actions = money_actions(order, staff_with("record"))

    assert actions.get("record_payment").why_not == (
        "Nothing is outstanding: the order is paid in full."
    )
    assert actions.get("record_refund").allowed


def test_offline_cancelled_order_refuses_a_payment_by_its_status(
    make_order, offline_method, supervisor
):
    order = override_status(
        make_order(method=offline_method), S.CANCELLED, user=supervisor, reason="customer left"
    )

    actions = money_actions(order, staff_with("record"))

    assert actions.get("record_payment").why_not == (
        "A payment cannot be recorded while the order is Cancelled."
    )


def test_offline_order_marked_paid_before_the_money_says_how_to_record_the_cheque(
    make_order, offline_method, supervisor
):
    # The demo's D1005: "the cheque is in the post", marked Paid by hand.
    order = override_status(
        make_order(method=offline_method), S.PAID, user=supervisor, reason="cheque in the post"
    )

    actions = money_actions(order, staff_with("record"))

    assert actions.get("record_payment").why_not == (
        "A payment cannot be recorded while the order is Paid. To record money that "
        "arrived after the order was marked Paid, first change its status back to "
        "Awaiting payment."
    )


def test_offline_actions_without_permission_say_so(make_order, offline_method):
    order = make_order(method=offline_method)

    actions = money_actions(order, staff_with("view_order"))

    assert state(actions) == {
        "record_payment": (False, "You do not have permission to record payments.", None),
        "record_refund": (False, "You do not have permission to record refunds.", None),
    }
    assert not actions.permitted_any


# -- online methods ------------------------------------------------------------------


def test_authorized_order_offers_capture_of_the_hold_and_void(make_order):
    order = make_order(S.AUTHORIZED)

    actions = money_actions(order, staff_with(*ALL_ONLINE))

    assert state(actions) == {
        "capture": (True, "", Decimal("100.000")),
        "void": (True, "", None),
        "refund": (False, "Nothing left to refund.", None),
    }


def test_awaiting_online_order_can_be_neither_captured_nor_voided(make_order):
    order = make_order(S.AWAITING_PAYMENT)

    actions = money_actions(order, staff_with(*ALL_ONLINE))

    assert actions.get("capture").why_not == (
        "Only an authorized payment can be captured; the order is Awaiting payment."
    )
    assert actions.get("void").why_not == (
        "Only an authorized, uncaptured payment can be voided; the order is Awaiting payment."
    )
    assert not actions.allowed


def test_paid_order_offers_a_partial_refund_of_everything_captured(make_order):
    order = make_order(S.PAID)

    actions = money_actions(order, staff_with(*ALL_ONLINE))

    refund = actions.get("refund")
    assert (refund.allowed, refund.limit, refund.partial) == (True, Decimal("100.000"), True)
    assert not actions.get("capture").allowed
    assert not actions.get("void").allowed


def test_method_without_refunds_says_so_before_anything_else(make_order):
    method = PaymentMethodFactory(
        code="norefund", name="Stripe", supports_refunds=False, supports_partial_refunds=False
    )
    order = make_order(S.PAID, method=method)

    refund = money_actions(order, staff_with("view_order")).get("refund")

    assert refund.why_not == "This Stripe method does not support refunds."


def test_cancelled_order_with_money_captured_says_how_to_refund_it(make_order, supervisor):
    # The demo's D1012: Paid, then Cancelled by hand; the money is still kept.
    order = override_status(
        make_order(S.PAID), S.CANCELLED, user=supervisor, reason="phone", allow_discouraged=True
    )

    refund = money_actions(order, staff_with("refund")).get("refund")

    assert refund.why_not == (
        "Only a paid or partially paid order can be refunded; the order is Cancelled. "
        "To give back the 100.00 USD captured, first change its status to Paid."
    )


def test_method_without_partial_refunds_offers_the_whole_balance_only(make_order):
    method = PaymentMethodFactory(code="wholeonly", supports_partial_refunds=False)
    order = make_order(S.PARTIALLY_PAID, method=method)

    refund = money_actions(order, staff_with("refund")).get("refund")

    assert (refund.allowed, refund.limit, refund.partial) == (True, Decimal("50.000"), False)


def test_fully_refunded_order_has_nothing_left_to_refund(make_order):
    order = make_order(S.REFUNDED)

    refund = money_actions(order, staff_with("refund")).get("refund")

    assert refund.why_not == "Nothing left to refund."


def test_refund_in_flight_is_held_back_from_the_refundable_balance(make_order):
    order = make_order(S.PAID)
    pending(order, RequestAction.REFUND, "30.00")

    refund = money_actions(order, staff_with("refund")).get("refund")

    assert (refund.allowed, refund.limit) == (True, Decimal("70.000"))


def test_whole_balance_refund_is_refused_while_part_of_it_is_in_flight(make_order):
    method = PaymentMethodFactory(code="wholeonly", supports_partial_refunds=False)
    order = make_order(S.PAID, method=method)
    pending(order, RequestAction.REFUND, "30.00")

    refund = money_actions(order, staff_with("refund")).get("refund")

    assert refund.why_not == "A refund of 30.00 USD is still in progress."


def test_capture_in_flight_blocks_void_and_reduces_capture(make_order):
    order = make_order(S.AUTHORIZED)
    pending(order, RequestAction.CAPTURE, "100.00")

    actions = money_actions(order, staff_with(*ALL_ONLINE))

    assert actions.get("capture").why_not == "A capture of 100.00 USD is still in progress."
    assert actions.get("void").why_not == "A capture of 100.00 USD is still in progress."


def test_partial_capture_leaves_the_rest_of_the_hold_capturable(make_order):
    order = make_order(S.AUTHORIZED)
    order = apply_gateway_event(order, MoneyFact("captured", "cap_1", Decimal("40.00"))).order
    assert order.status == S.PARTIALLY_PAID

    actions = money_actions(order, staff_with(*ALL_ONLINE))

    assert held_amount(order) == Decimal("60.000")
    assert state(actions)["capture"] == (True, "", Decimal("60.000"))
    assert actions.get("void").why_not.startswith("Only an authorized, uncaptured payment")


def test_sale_order_partly_paid_without_a_hold_has_nothing_to_capture(make_order):
    method = PaymentMethodFactory(code="sale", capture_mode=CaptureMode.SALE)
    order = make_order(S.PARTIALLY_PAID, method=method)

    capture = money_actions(order, staff_with("capture")).get("capture")

    assert capture.why_not == "No authorization holds money to capture."


@pytest.mark.parametrize(
    ("missing", "action", "why"),
    [
        ("capture", "capture", "You do not have permission to capture payments."),
        ("capture", "void", "You do not have permission to void payments."),
        ("refund", "refund", "You do not have permission to refund."),
    ],
)
def test_each_online_action_needs_its_own_permission(make_order, missing, action, why):
    order = make_order(S.AUTHORIZED if action != "refund" else S.PAID)
    others = [name for name in ALL_ONLINE if name != missing]

    actions = money_actions(order, staff_with(*others))

    assert (actions.get(action).allowed, actions.get(action).why_not) == (False, why)


def test_viewer_may_take_no_action(make_order):
    actions = money_actions(make_order(S.PAID), staff_with("view_order"))

    assert not actions.allowed
    assert not actions.permitted_any


# -- change status ---------------------------------------------------------------------


def test_change_status_links_to_its_page_with_the_override_permission(make_order, supervisor):
    order = make_order(S.PAID)

    allowed = money_actions(order, supervisor).get("change_status")
    refused = money_actions(order, staff_with("refund")).get("change_status")

    assert allowed.allowed
    assert allowed.url == reverse("admin:orders_order_change_status", args=[order.pk])
    assert refused.why_not == "You do not have permission to change the payment status."


def test_change_status_is_absent_where_its_page_does_not_exist(make_order, supervisor, monkeypatch):
    def no_such_page(name, *args, **kwargs):
        raise NoReverseMatch(name)

    monkeypatch.setattr(payments.availability, "reverse", no_such_page)

    actions = money_actions(make_order(S.PAID), supervisor)

    assert actions.get("change_status") is None
    assert [a.name for a in actions] == ["capture", "void", "refund"]


@pytest.mark.parametrize("status", [S.AUTHORIZED, S.PAID])
def test_stripe_method_without_an_api_key_says_so_instead_of_offering_a_doomed_action(
    make_order, status
):
    method = PaymentMethodFactory(code="stripe-nokey", name="Stripe", gateway="stripe", api_key="")
    order = make_order(status, method=method)

    actions = money_actions(order, staff_with(*ALL_ONLINE))

    # The gateway can only refuse without a key: staff learn it before filling a form.
    assert not actions.allowed
    offered = {"capture", "void"} if status == S.AUTHORIZED else {"refund"}
    for name in offered:
        assert actions.get(name).why_not == (
            "The Stripe payment method has no API key: add one to the payment method "
            "to capture, void or refund through the gateway."
        )


def test_stripe_method_with_an_api_key_offers_its_actions(make_order):
    method = PaymentMethodFactory(
        code="stripe-key", name="Stripe", gateway="stripe", api_key="sk_test_only"
    )
    order = make_order(S.AUTHORIZED, method=method)

    actions = money_actions(order, staff_with(*ALL_ONLINE))

    assert {a.name for a in actions.allowed} == {"capture", "void"}
