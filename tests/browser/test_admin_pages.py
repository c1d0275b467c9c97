"""What staff see in the back office, in a real browser."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from playwright.sync_api import expect

from orders.models import PaymentStatus
from payments.models import EventOutcome, GatewayEvent
from tests.factories import bring_to
from tests.payments.callbacks import body_for
from tests.payments.callbacks import post as post_callback

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWER_PASSWORD = "viewer-pass-123"


@pytest.fixture
def viewer(django_user_model):
    """Staff who may look at orders, their ledger and gateway events, and change nothing."""
    user = django_user_model.objects.create_user(
        username="viewer", password=VIEWER_PASSWORD, is_staff=True
    )
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_order", "view_paymenttransaction", "view_gatewayevent"]
        )
    )
    return user


@pytest.fixture
def flagged_order(make_order):
    """A declined order; the gateway's signed callback then reports a refund of it."""
    order = bring_to(make_order(), PaymentStatus.DECLINED)
    response = post_callback(Client(), body_for(order.number, "payment.refunded", amount="10.00"))
    assert response.status_code == 200, response.content
    assert GatewayEvent.objects.get(order=order).outcome == EventOutcome.IGNORED
    order.refresh_from_db()
    assert order.needs_attention
    return order


def test_viewer_finds_the_flagged_order_and_reads_why(
    page, login, screenshot, viewer, make_order, flagged_order
):
    in_order = make_order(PaymentStatus.AWAITING_PAYMENT)

    login("viewer", VIEWER_PASSWORD)
    page.locator("#content-main .model-order").get_by_role("link", name="Orders").click()
    expect(page.locator("#content h1")).to_have_text("Orders")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    screenshot("order-list")

    page.locator("#changelist-filter").get_by_role("link", name="Needs attention").click()
    expect(page).to_have_url(re.compile(r"[?&]attention=yes"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(flagged_order.number)
    # The reason in words, in the row itself (the full explanation is its tooltip).
    expect(rows.first.locator(".order-attention-reason")).to_have_text(
        re.compile("Ignored gateway event")
    )
    expect(page.locator("#result_list")).not_to_contain_text(in_order.number)
    screenshot("order-list-needs-attention")

    rows.first.get_by_role("link", name=flagged_order.number).click()
    expect(page.locator("#content h1")).to_have_text(f"Order {flagged_order.number} Declined")
    expect(page.locator(".order-attention")).to_contain_text(
        "A gateway event could not be applied and has not been acknowledged."
    )
    # View permission only: the e-mail is text, not a field, and nothing can be saved.
    expect(page.locator(".field-customer_email")).to_be_visible()
    expect(page.locator("#id_customer_email")).to_have_count(0)
    expect(page.locator("input[type=submit][name^=_save]")).to_have_count(0)
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    # No save row at all; the breadcrumbs lead back to the list.
    expect(page.locator(".breadcrumbs").get_by_role("link", name="Orders").last).to_be_visible()
    screenshot("order-view")


def test_superuser_sees_gateway_events(page, login, screenshot, admin_user, flagged_order):
    ignored = GatewayEvent.objects.get(order=flagged_order)

    login(admin_user.username, "password")
    page.goto("/admin/")
    events_link = page.locator("#content-main .model-gatewayevent").get_by_role("link")
    events_link.filter(has_text="Gateway events").click()
    # Gateway events are evidence: even a superuser only views them.
    expect(page.locator("#content h1")).to_have_text("Select gateway event to view")
    row = page.locator("#result_list tbody tr", has_text=ignored.event_id)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(flagged_order.number)
    # The one event that needs attention carries the warning, with its words.
    expect(row.locator('img[alt="Needs attention"]')).to_have_count(1)
    expect(page.locator('#result_list img[alt="Needs attention"]')).to_have_count(1)
    expect(page.locator("select[name=action]")).to_contain_text("Acknowledge selected")
    screenshot("gateway-events")


def test_superuser_acknowledges_events_from_the_order_list(
    page, login, screenshot, admin_user, make_order, flagged_order
):
    make_order(PaymentStatus.PAID)

    login(admin_user.username, "password")
    page.goto("/admin/orders/order/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    # Amounts and their currency stay on one line, the badge carries the status.
    money = page.locator("#result_list .order-money").first
    line_height = money.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 20")
    assert money.bounding_box()["height"] < 1.8 * line_height
    expect(page.locator("#result_list .status-badge").first).to_be_visible()
    screenshot("order-list-superuser")

    flagged_row = rows.filter(has_text=flagged_order.number)
    flagged_row.locator("input.action-select").check()
    page.locator("select[name=action]").select_option("acknowledge_gateway_events")
    page.get_by_role("button", name="Go").click()

    expect(page.locator(".messagelist")).to_contain_text(
        "1 gateway event acknowledged on the 1 selected order(s)."
    )
    expect(flagged_row.locator(".order-attention-reason")).to_have_count(0)
    screenshot("order-list-acknowledged")
