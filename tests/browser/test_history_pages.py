"""An order's history, and a past version of it, as a clerk sees them."""

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from orders.models import PaymentStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CLERK_PASSWORD = "clerk-pass-123"


@pytest.fixture
def clerk(django_user_model, staff_groups):
    user = django_user_model.objects.create_user(
        username="desk-clerk", password=CLERK_PASSWORD, is_staff=True
    )
    user.groups.add(Group.objects.get(name="Payments clerk"))
    return user


def test_clerk_reads_the_history_and_a_past_version(page, login, screenshot, clerk, make_order):
    order = make_order(PaymentStatus.PAID, customer_email="first@example.com")

    login("desk-clerk", CLERK_PASSWORD)
    page.goto(f"/admin/orders/order/{order.pk}/change/")
    page.get_by_role("link", name="History").click()
    table = page.locator("#change-history")
    expect(table.locator("thead")).to_contain_text("Payment status")
    newest = table.locator("tbody tr").first
    expect(newest).to_contain_text("Paid")
    expect(newest).to_contain_text("Gateway")
    expect(newest).to_contain_text("UTC")
    expect(table).not_to_contain_text("None")
    screenshot("order-history")

    table.locator("tbody tr").last.get_by_role("link").click()
    expect(page.locator(".field-status")).to_contain_text("Awaiting payment")
    expect(page.locator("#id_customer_email")).to_have_count(0)
    expect(page.locator("input[type=submit]")).to_have_count(0)
    expect(page.get_by_role("link", name="Close")).to_be_visible()
    expect(page.locator("#content")).to_contain_text("History is read-only")
    expect(page.locator(".breadcrumbs")).not_to_contain_text("Historical")
    screenshot("order-past-version")
    page.emulate_media(color_scheme="dark")
    screenshot("order-past-version-dark")
