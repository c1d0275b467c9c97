"""The order change page: what it shows, to whom, and at what cost in queries."""

import copy
import re
from datetime import timedelta
from decimal import Decimal
from html import unescape

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orders.models import Order
from orders.models import PaymentStatus as S
from orders.services import override_status, place_order
from payments.gateways import MoneyFact
from payments.services import apply_gateway_event
from tests.factories import next_number
from tests.orders.staff import staff_with
from tests.payments.callbacks import body_for
from tests.payments.callbacks import post as post_callback

pytestmark = pytest.mark.django_db


def page_url(order) -> str:
    return reverse("admin:orders_order_change", args=[order.pk])


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def main(response) -> str:
    """The page's own content, without the admin's header and sidebar."""
    text = response.content.decode()
    return text[text.index('<div id="content"') : text.index("<!-- END Content -->")]


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def section(response, section_id: str) -> str:
    html = main(response)
    start = html.rindex("<section", 0, html.index(f'id="{section_id}"'))
    return html[start : html.index("</section>", start)]


def test_page_is_titled_by_the_order_with_its_status(admin_client, make_order):
    order = make_order(S.AUTHORIZED)

    response = admin_client.get(page_url(order))

    assert response.status_code == 200
    h1 = re.search(r"<h1[^>]*>(.*?)</h1>", main(response), re.S).group(1)
    assert text_of(h1) == f"Order {order.number} Authorized"
    assert 'class="status-badge status-authorized"' in h1
    assert "Change order" not in response.text
    assert response.context["title"] == f"Order {order.number}"


def test_no_save_row_and_a_save_of_its_own_for_the_email(admin_client, admin_user, make_order):
    order = make_order(S.PAID, customer_email="old@example.com")
    page = admin_client.get(page_url(order))
    customer = section(page, "customer")
    assert 'name="customer_email"' in customer and 'name="_continue"' in customer
    assert "submit-row" not in main(page)
    assert 'name="_save"' not in page.text

    response = admin_client.post(
        page_url(order),
        {"customer_email": "new@example.com", "_continue": "Save"},
    )

    assert response.status_code == 302
    assert response.url == page_url(order)
    order = Order.objects.get(pk=order.pk)
    assert order.customer_email == "new@example.com"
    latest = order.history.first()
    assert (latest.history_user, latest.history_change_reason) == (
        admin_user,
        "Order details changed: customer email.",
    )


def test_invalid_email_shows_on_the_small_form(admin_client, make_order):
    order = make_order(S.PAID, customer_email="old@example.com")

    response = admin_client.post(page_url(order), {"customer_email": "not an address"})

    assert response.status_code == 200
    assert "Enter a valid email address." in section(response, "customer")
    assert 'value="not an address"' in section(response, "customer")
    assert Order.objects.get(pk=order.pk).customer_email == "old@example.com"


def test_viewer_sees_no_button_and_no_field(make_order, supervisor):
    order = override_status(
        make_order(S.PAID), S.CANCELLED, user=supervisor, reason="x", allow_discouraged=True
    )
    response = logged_in(staff_with("view_order")).get(page_url(order))
    html = main(response)

    assert response.status_code == 200
    assert "<button" not in html and 'type="submit"' not in html
    assert "<form" not in html
    assert 'id="actions"' not in html
    assert "old@example.com" not in html
    assert "Customer email" in text_of(section(response, "customer"))
    # The reasons are still there to read.
    assert "but the status is Cancelled" in text_of(html)


def test_clerk_sees_record_payment_and_why_not_a_refund(make_order, offline_method):
    order = make_order(method=offline_method)

    response = logged_in(staff_with("view_order", "record")).get(page_url(order))
    actions = section(response, "actions")

    assert reverse("admin:orders_order_record_payment", args=[order.pk]) in actions
    assert "Record refund: Nothing left to refund." in text_of(actions)
    assert "Capture" not in actions  # an online action has no place on a cheque order
    assert 'id="order_form"' not in main(response)  # no change permission: no e-mail form


def test_cashier_sees_refund_refused_with_the_methods_reason(make_order):
    from tests.factories import PaymentMethodFactory

    method = PaymentMethodFactory(
        code="norefund", name="Stripe", supports_refunds=False, supports_partial_refunds=False
    )
    order = make_order(S.PAID, method=method)
    user = staff_with("view_order", "capture", "refund")

    actions = text_of(section(logged_in(user).get(page_url(order)), "actions"))

    assert "Refund: This Stripe method does not support refunds." in actions
    assert "Capture: Only an authorized payment can be captured; the order is Paid." in actions


def test_attention_banner_lists_every_reason_with_the_fix_in_place(make_order, supervisor):
    order = make_order(S.DECLINED)
    post_callback(Client(), body_for(order.number, "payment.refunded", amount="10.00"))
    # And a running total that disagrees with the ledger.
    Order.objects.filter(pk=order.pk).update(captured_amount=Decimal("5.00"))
    user = staff_with("view_order", "acknowledge")

    response = logged_in(user).get(page_url(order))
    banner = main(response)[main(response).index("order-attention") :]
    banner = banner[: banner.index("</div>")]

    assert "This order needs attention" in banner
    assert "A gateway event could not be applied and has not been acknowledged." in text_of(banner)
    assert "The captured total (5.00 USD) is not the sum of the ledger's captures (0.00 USD)." in (
        text_of(banner)
    )
    assert "payment.refunded" in banner
    assert ">Acknowledge</button>" in banner


def test_no_banner_for_an_order_in_order(admin_client, make_order):
    response = admin_client.get(page_url(make_order(S.PAID)))

    assert "order-attention" not in main(response)


def test_totals_in_the_currencys_decimals_and_disputed_only_when_any(admin_client, online_method):
    order = place_order(
        number=next_number(), total=Decimal("1500"), currency="JPY", payment_method=online_method
    )
    apply_gateway_event(order, MoneyFact("authorized", "pi_1"))
    plain = text_of(section(admin_client.get(page_url(order)), "money"))
    apply_gateway_event(order, MoneyFact("captured", "pi_1", Decimal("1500")))
    apply_gateway_event(order, MoneyFact("dispute_funds_withdrawn", "dp_1", Decimal("500")))
    disputed = text_of(section(admin_client.get(page_url(order)), "money"))

    assert plain == (
        "Money Total 1500 JPY Authorized (held) 1500 JPY Captured 0 JPY Refunded 0 JPY "
        "Kept 0 JPY Outstanding 1500 JPY"
    )
    assert disputed == (
        "Money Total 1500 JPY Authorized (held) 0 JPY Captured 1500 JPY Refunded 0 JPY "
        "Disputed 500 JPY Kept 1000 JPY Outstanding 0 JPY"
    )


@pytest.mark.parametrize("status", [S.REFUNDED, S.CANCELLED, S.DECLINED])
def test_a_closed_order_shows_nothing_outstanding(admin_client, make_order, status):
    order = make_order(status)

    money_block = text_of(section(admin_client.get(page_url(order)), "money"))

    # Not "Outstanding 100.00 USD": nobody is waiting for that money any more.
    assert money_block.endswith("Outstanding -"), money_block


def test_ledger_and_events_link_to_their_own_pages(admin_client, make_order):
    order = make_order(S.AWAITING_PAYMENT)
    post_callback(Client(), body_for(order.number, "payment.captured", amount="100.00"))
    response = admin_client.get(page_url(order))
    row = order.transactions.get()
    event = order.gateway_events.get()

    ledger = section(response, "ledger")
    events = section(response, "gateway-events")

    assert reverse("admin:payments_paymenttransaction_change", args=[row.pk]) in ledger
    assert "Capture" in text_of(ledger) and "100.00 USD" in text_of(ledger)
    assert reverse("admin:payments_gatewayevent_change", args=[event.pk]) in events
    assert "payment.captured" in events and ">Applied</span>" in events


# -- timeline -----------------------------------------------------------------------------


def timeline_rows(response) -> list[str]:
    body = section(response, "timeline")
    body = body[body.index("<tbody>") : body.index("</tbody>")]
    return [text_of(row) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_timeline_newest_first_with_labels_who_and_why(admin_client, admin_user, make_order):
    order = make_order(S.PAID)
    logged_in(admin_user).post(page_url(order), {"customer_email": "a@example.com"})

    rows = timeline_rows(admin_client.get(page_url(order)))

    assert len(rows) == 3
    assert rows[0].endswith(
        f"Paid → Paid {admin_user.username} Admin Order details changed: customer email."
    )
    assert "Awaiting payment → Paid gateway Gateway" in rows[1]
    assert rows[2].endswith("placed: Awaiting payment storefront Storefront Order placed: "
                            "Awaiting payment.")  # fmt: skip
    assert "None" not in " ".join(rows)
    assert "awaiting_payment" not in " ".join(rows)


def add_history(order, count: int, *, user=None) -> None:
    """``count`` more history records for ``order``, as many saves would leave."""
    base = order.history.order_by("-history_date").first()
    records = []
    for n in range(count):
        record = copy.copy(base)
        record.history_id = None
        record.history_type = "~"
        record.history_date = base.history_date + timedelta(seconds=n + 1)
        record.history_change_reason = f"note {n + 1}"
        record.history_user = user
        records.append(record)
    type(base).objects.bulk_create(records)


def test_timeline_pages_past_fifty_records(admin_client, make_order):
    order = make_order(S.AWAITING_PAYMENT)  # one record: placed
    add_history(order, 59)

    first = admin_client.get(page_url(order))
    second = admin_client.get(page_url(order), {"timeline": "2"})

    assert len(timeline_rows(first)) == 50
    assert timeline_rows(first)[0].endswith("note 59")
    assert "Page 1 of 2 (60 records)" in text_of(section(first, "timeline"))
    assert "?timeline=2" in section(first, "timeline")
    assert len(timeline_rows(second)) == 10
    # The last on page 2 is the first record; the first on page 2 follows one on page 1.
    assert "placed: Awaiting payment" in timeline_rows(second)[-1]
    assert "Awaiting payment → Awaiting payment" in timeline_rows(second)[0]


def test_timeline_pages_keep_the_order_lists_filters(admin_client, make_order):
    # Opened from a filtered list: paging the timeline must not lose the way back.
    order = make_order(S.AWAITING_PAYMENT)
    add_history(order, 59)
    filters = "_changelist_filters=status__exact%3Dpaid"

    first = admin_client.get(f"{page_url(order)}?{filters}")
    second = admin_client.get(f"{page_url(order)}?{filters}&timeline=2")

    assert f"?{filters}&amp;timeline=2#timeline" in section(first, "timeline")
    assert f"?{filters}&amp;timeline=1#timeline" in section(second, "timeline")


@pytest.mark.parametrize("value", ["", "abc", "0", "-3", "1.5", "2abc", "%00", "\u0661", "\u00b2"])
def test_odd_timeline_values_are_page_one(admin_client, make_order, value):
    order = make_order(S.PAID)

    response = admin_client.get(page_url(order), {"timeline": value})

    assert response.status_code == 200
    assert len(timeline_rows(response)) == 2


@pytest.mark.parametrize("value", ["2", "99999999999999999999999999"])
def test_timeline_page_past_the_last_is_404(admin_client, make_order, value):
    order = make_order(S.PAID)

    assert admin_client.get(page_url(order), {"timeline": value}).status_code == 404


def test_query_count_does_not_grow_with_history_ledger_or_events(
    admin_client, admin_user, make_order
):
    small = make_order(S.AWAITING_PAYMENT)
    large = make_order(S.AWAITING_PAYMENT)
    for order, captures in ((small, 1), (large, 8)):
        for _ in range(captures):
            post_callback(Client(), body_for(order.number, "payment.captured", amount="1.00"))
    add_history(small, 5 - small.history.count(), user=admin_user)
    add_history(large, 200 - large.history.count(), user=admin_user)
    assert (small.history.count(), large.history.count()) == (5, 200)
    admin_client.get(page_url(small))  # warm caches (content types, sessions)

    counts = []
    for order in (small, large):
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(page_url(order))
        assert response.status_code == 200
        counts.append(len(queries))

    assert counts[0] == counts[1], counts


def test_change_status_button_for_those_who_may_override(make_order):
    order = make_order(S.PAID)
    link = reverse("admin:orders_order_change_status", args=[order.pk])

    overriding = section(
        logged_in(staff_with("view_order", "override")).get(page_url(order)), "actions"
    )
    refunding = section(
        logged_in(staff_with("view_order", "refund")).get(page_url(order)), "actions"
    )

    assert f'href="{link}"' in overriding and ">Change status</a>" in overriding
    assert link not in refunding
    assert "Change status: You do not have permission to change the payment status." in (
        text_of(refunding)
    )
