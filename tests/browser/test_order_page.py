"""The order page as staff work on it: recording, refunding, capturing, or only looking."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from orders.models import Order
from orders.models import PaymentStatus as S
from payments.models import PaymentRequest, PaymentTransaction, TransactionKind
from tests.orders.staff import staff_with

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "staff-pass-123"


def open_order(page, order) -> None:
    page.goto(f"/admin/orders/order/{order.pk}/change/")
    expect(page.locator("#content h1")).to_contain_text(f"Order {order.number}")


def money_row(page, label: str):
    """The amount of one line of the Money block."""
    return (
        page.locator("#money tr")
        .filter(has=page.get_by_role("rowheader", name=label, exact=True))
        .locator("td")
    )


def amounts(order, kind: str) -> list[Decimal]:
    rows = PaymentTransaction.objects.filter(order=order, kind=kind).order_by("id")
    return list(rows.values_list("amount", flat=True))


def test_clerk_records_a_cheque_payment(page, login, screenshot, make_order, offline_method):
    staff_with("view_order", "record", username="clerk", password=PASSWORD)
    order = make_order(method=offline_method)

    login("clerk", PASSWORD)
    open_order(page, order)
    actions = page.locator("#actions")
    expect(actions).to_contain_text("Record refund: Nothing left to refund.")
    screenshot("order-awaiting-cheque")

    actions.get_by_role("link", name="Record payment").click()
    expect(page.get_by_label("Amount")).to_have_value("100.00")
    screenshot("record-payment-form")
    page.get_by_label("Amount").fill("60.00")
    page.get_by_role("button", name="Record payment").click()
    expect(page.locator(".errornote")).to_contain_text("Nothing was done")
    expect(page.locator(".field-reference .errorlist")).to_contain_text("required")
    expect(page.get_by_label("Amount")).to_have_value("60.00")  # the input is kept
    screenshot("record-payment-missing-reference")

    page.get_by_label("Cheque or transfer number").fill("CHQ-4711")
    page.get_by_role("button", name="Record payment").click()

    expect(page.locator("ul.messagelist")).to_contain_text(
        f"Recorded a payment of 60.00 USD (CHQ-4711) on order {order.number}; "
        "its payment status is now Partially paid."
    )
    expect(page.locator("#content h1 .status-badge")).to_have_text("Partially paid")
    expect(money_row(page, "Outstanding")).to_have_text("40.00 USD")
    expect(page.locator("#ledger")).to_contain_text("CHQ-4711")
    expect(page.locator("#timeline tbody tr").first).to_contain_text("clerk")
    screenshot("order-after-cheque")
    assert amounts(order, TransactionKind.CAPTURE) == [Decimal("60.000")]


def test_partial_refund_then_the_rest(page, login, screenshot, make_order):
    staff_with("view_order", "refund", username="cashier", password=PASSWORD)
    order = make_order(S.PAID)

    login("cashier", PASSWORD)
    open_order(page, order)
    page.locator("#actions").get_by_role("link", name="Refund").click()
    expect(page.locator(".order-action-limit")).to_contain_text("Refundable now: 100.00 USD")
    page.get_by_label("Amount").fill("30.00")
    page.get_by_label("Reason").fill("One item came back")
    screenshot("refund-form-partial")
    page.get_by_role("button", name="Refund").click()

    expect(page.locator("ul.messagelist")).to_contain_text(
        f"Refunded 30.00 USD on order {order.number}; its payment status is now Partially paid."
    )
    screenshot("order-after-partial-refund")
    # Back to the form: a fresh one on the balance left, never the first refund again.
    page.go_back()
    expect(page.locator(".order-action-limit")).to_contain_text("Refundable now: 70.00 USD")
    expect(page.get_by_label("Amount")).to_have_value("70.00")
    assert amounts(order, TransactionKind.REFUND) == [Decimal("30.000")]
    screenshot("refund-form-after-back")

    page.get_by_label("Reason").fill("The rest came back too")
    page.get_by_role("button", name="Refund").click()

    expect(page.locator("ul.messagelist")).to_contain_text(
        f"Refunded 70.00 USD on order {order.number}; its payment status is now Refunded."
    )
    expect(page.locator("#actions")).to_contain_text("Refund: Nothing left to refund.")
    expect(page.locator("#actions a.button")).to_have_count(0)
    screenshot("order-refunded")
    assert amounts(order, TransactionKind.REFUND) == [Decimal("30.000"), Decimal("70.000")]
    assert Order.objects.get(pk=order.pk).status == S.REFUNDED
    assert PaymentRequest.objects.filter(order=order).count() == 2


def test_capture_of_an_authorized_order(page, login, screenshot, make_order):
    staff_with("view_order", "capture", username="cashier", password=PASSWORD)
    order = make_order(S.AUTHORIZED)

    login("cashier", PASSWORD)
    open_order(page, order)
    expect(money_row(page, "Authorized (held)")).to_have_text("100.00 USD")
    expect(page.locator("#actions").get_by_role("link", name="Void")).to_be_visible()
    screenshot("order-authorized")

    page.locator("#actions").get_by_role("link", name="Capture").click()
    expect(page.locator(".order-action-limit")).to_contain_text("Capturable now: 100.00 USD")
    page.get_by_label("Amount").fill("100.01")
    page.get_by_role("button", name="Capture").click()
    expect(page.locator(".errornote")).to_contain_text(
        "Nothing was done: The amount 100.01 USD is more than the 100.00 USD that can be captured."
    )
    screenshot("capture-above-the-hold")

    page.get_by_label("Amount").fill("100.00")
    page.get_by_role("button", name="Capture").click()

    expect(page.locator("ul.messagelist")).to_contain_text(
        f"Captured 100.00 USD on order {order.number}; its payment status is now Paid."
    )
    expect(page.locator("#content h1 .status-badge")).to_have_text("Paid")
    expect(money_row(page, "Captured")).to_have_text("100.00 USD")
    expect(page.locator("#actions")).to_contain_text("Only an authorized payment can be captured")
    screenshot("order-captured")
    assert amounts(order, TransactionKind.CAPTURE) == [Decimal("100.000")]


def test_viewer_sees_no_action_buttons(page, login, screenshot, make_order):
    staff_with("view_order", username="viewer", password=PASSWORD)
    order = make_order(S.PAID)

    login("viewer", PASSWORD)
    open_order(page, order)

    expect(money_row(page, "Captured")).to_have_text("100.00 USD")
    expect(page.locator("#actions")).to_have_count(0)
    expect(page.locator("#content-main button")).to_have_count(0)
    expect(page.locator("#content-main input")).to_have_count(0)
    expect(page.locator("#content-main a.button")).to_have_count(0)
    expect(page.locator("#timeline")).to_contain_text(re.compile("placed"))
    screenshot("order-viewer")


def test_supervisor_acknowledges_the_flagging_event_in_place(page, login, screenshot, make_order):
    from django.test import Client

    from payments.models import GatewayEvent
    from tests.factories import bring_to
    from tests.payments.callbacks import body_for
    from tests.payments.callbacks import post as post_callback

    staff_with("view_order", "acknowledge", username="supervisor", password=PASSWORD)
    order = bring_to(make_order(), S.DECLINED)
    post_callback(Client(), body_for(order.number, "payment.refunded", amount="10.00"))
    event = GatewayEvent.objects.get(order=order)

    login("supervisor", PASSWORD)
    page.emulate_media(color_scheme="dark")
    open_order(page, order)
    banner = page.locator(".order-attention")
    expect(banner).to_contain_text("A gateway event could not be applied")
    expect(banner.get_by_role("link", name=re.compile(event.event_id))).to_be_visible()
    screenshot("attention-banner-dark")

    banner.get_by_role("button", name="Acknowledge").click()

    expect(page.locator("ul.messagelist")).to_contain_text(
        f"Acknowledged event {event.event_id}: order {order.number} no longer needs attention"
    )
    expect(page.locator(".order-attention")).to_have_count(0)
    expect(page).to_have_url(re.compile(rf"/admin/orders/order/{order.pk}/change/$"))
    screenshot("attention-acknowledged-dark")
    assert not Order.objects.get(pk=order.pk).needs_attention
