"""Changing a payment status by hand in the admin, as staff do it, in a real browser."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from playwright.sync_api import expect

from orders.models import Order, PaymentStatus
from orders.policy import discouraged_reason

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "status-pass-123"


def staff(django_user_model, username: str, *codenames: str):
    user = django_user_model.objects.create_user(
        username=username, password=PASSWORD, is_staff=True
    )
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=codenames, content_type__app_label="orders")
    )
    return user


@pytest.fixture
def manager(django_user_model):
    return staff(
        django_user_model,
        "manager",
        "view_order",
        "override_payment_status",
        "confirm_discouraged_transition",
    )


@pytest.fixture
def clerk(django_user_model):
    return staff(django_user_model, "clerk", "view_order", "override_payment_status")


def fill_form(page, status_label: str, reason: str) -> None:
    expect(page.locator("#content h1")).to_have_text("Change payment status")
    page.get_by_label("New payment status").select_option(label=status_label)
    page.get_by_label("Reason").fill(reason)
    page.get_by_role("button", name="Review the change").click()
    expect(page.locator("#content h1")).to_have_text("Confirm the payment status change")


def test_manager_cancels_a_paid_order_against_the_advice(
    page, login, screenshot, manager, make_order
):
    order = make_order(PaymentStatus.PAID)
    warning = discouraged_reason(PaymentStatus.PAID, PaymentStatus.CANCELLED)

    login("manager", PASSWORD)
    page.goto(reverse("admin:orders_order_change_status", args=[order.pk]))
    expect(page.locator(".breadcrumbs")).to_contain_text(order.number)
    expect(page.locator("#content-main .status-badge")).to_have_text("Paid")
    screenshot("form")
    fill_form(page, "Cancelled", "Customer cancelled by phone")

    row = page.locator("#change-status-orders tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator(".status-badge").first).to_have_text("Paid")
    expect(row.locator(".status-badge").last).to_have_text("Cancelled")
    expect(row.locator(".change-status-warning")).to_contain_text(warning)
    expect(page.locator("#discouraged-warning")).to_be_visible()
    screenshot("confirm-warning")
    page.emulate_media(color_scheme="dark")
    screenshot("confirm-warning-dark")
    page.emulate_media(color_scheme="light")

    page.get_by_label(re.compile("still want this discouraged change made")).check()
    page.get_by_role("button", name="Yes, change the payment status").click()

    expect(page.locator("#content h1")).to_have_text("Payment status change: summary")
    expect(page.locator("#change-status-counts")).to_contain_text("Changed: 1.")
    result = page.locator("#change-status-results tbody tr", has_text=order.number)
    expect(result).to_contain_text("Changed")
    expect(page.locator(".messagelist")).to_contain_text("Changed the payment status of 1 order")
    screenshot("summary")

    page.get_by_role("link", name="History").click()
    expect(page).to_have_url(re.compile(rf"/admin/orders/order/{order.pk}/history/$"))
    latest = page.locator("#change-history tbody tr").first
    # The history list may show the stored value or its label: either says Cancelled.
    expect(latest).to_contain_text("cancelled", ignore_case=True)
    expect(latest).to_contain_text("Customer cancelled by phone")
    expect(latest).to_contain_text("manager")
    expect(latest).to_contain_text("admin", ignore_case=True)
    screenshot("history")
    assert Order.objects.get(pk=order.pk).status == PaymentStatus.CANCELLED


def test_clerk_sees_the_warning_and_cannot_confirm(page, login, screenshot, clerk, make_order):
    order = make_order(PaymentStatus.PAID)
    warning = discouraged_reason(PaymentStatus.PAID, PaymentStatus.CANCELLED)

    login("clerk", PASSWORD)
    page.goto(reverse("admin:orders_order_change_status", args=[order.pk]))
    fill_form(page, "Cancelled", "Customer asked")

    expect(page.locator("#change-status-orders")).to_contain_text(warning)
    expect(page.locator("#manager-must-confirm")).to_contain_text("A manager must confirm")
    expect(page.locator("input[name=confirm_discouraged]")).to_have_count(0)
    expect(page.get_by_role("button", name="Yes, change the payment status")).to_have_count(0)
    screenshot("confirm-refused")
    assert Order.objects.get(pk=order.pk).status == PaymentStatus.PAID

    # The advice is followed instead: Refunded, which the clerk may choose alone.
    page.get_by_role("button", name="Choose another status").click()
    expect(page.get_by_label("Reason")).to_have_value("Customer asked")
    page.get_by_label("New payment status").select_option(label="Refunded")
    page.get_by_role("button", name="Review the change").click()
    expect(page.locator("#discouraged-warning")).to_have_count(0)
    page.get_by_role("button", name="Yes, change the payment status").click()
    expect(page.locator("#change-status-counts")).to_contain_text("Changed: 1.")
    assert Order.objects.get(pk=order.pk).status == PaymentStatus.REFUNDED


def test_bulk_change_of_five_orders_from_the_list(page, login, screenshot, manager, make_order):
    chosen = [make_order() for _ in range(5)]
    other = make_order()

    login("manager", PASSWORD)
    page.goto(reverse("admin:orders_order_changelist"))
    for order in chosen:
        page.locator("#result_list tbody tr", has_text=order.number).locator(
            "input.action-select"
        ).check()
    page.locator("select[name=action]").select_option(
        label="Change payment status of selected orders"
    )
    screenshot("list-selected")
    page.locator("button[name=index]").click()

    expect(page.locator("#content-main")).to_contain_text("5 orders selected.")
    fill_form(page, "Declined", "Card issuer flagged fraud")
    expect(page.locator("#change-status-orders tbody tr")).to_have_count(5)
    expect(page.locator("#change-status-orders")).not_to_contain_text(other.number)
    screenshot("confirm")
    page.get_by_role("button", name="Yes, change the payment status").click()

    expect(page.locator("#change-status-counts")).to_have_text(
        "Changed: 5. Already there: 0. Refused: 0. Failed: 0."
    )
    expect(page.locator("#change-status-results tbody tr.result-changed")).to_have_count(5)
    screenshot("summary")

    page.get_by_role("link", name="Back to the orders").click()
    expect(page.locator("#content h1")).to_have_text("Orders")
    statuses = {o.number: o.status for o in Order.objects.all()}
    assert [statuses[o.number] for o in chosen] == [PaymentStatus.DECLINED] * 5
    assert statuses[other.number] == PaymentStatus.AWAITING_PAYMENT
