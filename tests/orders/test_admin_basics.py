"""The admin shows real data, keeps status read-only and history unrevertable."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from orders.models import Order
from orders.models import PaymentStatus as S
from orders.services import override_status
from payments.models import PaymentMethod
from tests.admin_forms import assert_saved, post_change_form
from tests.orders.staff import staff_with


@pytest.fixture
def admin_client_(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.mark.django_db
def test_order_list_shows_orders_and_filters_attention(admin_client_, make_order, supervisor):
    ok = make_order(S.PAID)
    bad = override_status(
        make_order(S.PAID), S.CANCELLED, user=supervisor, reason="x", allow_discouraged=True
    )
    url = reverse("admin:orders_order_changelist")

    everything = admin_client_.get(url)
    flagged = admin_client_.get(url, {"attention": "yes"})
    fine = admin_client_.get(url, {"attention": "no"})

    assert everything.status_code == 200
    assert ok.number in everything.text and bad.number in everything.text
    assert list(flagged.context["cl"].result_list) == [Order.objects.get(pk=bad.pk)]
    assert list(fine.context["cl"].result_list) == [Order.objects.get(pk=ok.pk)]


@pytest.mark.django_db
def test_order_page_explains_attention(admin_client_, make_order, supervisor):
    order = override_status(
        make_order(S.PAID), S.CANCELLED, user=supervisor, reason="x", allow_discouraged=True
    )

    page = admin_client_.get(reverse("admin:orders_order_change", args=[order.pk]))

    assert page.status_code == 200
    assert "Money has been captured and kept (100.00 USD) but the status is Cancelled." in (
        page.text
    )


@pytest.mark.django_db
def test_status_cannot_be_changed_through_the_change_form(admin_client_, make_order):
    order = make_order(S.PARTIALLY_PAID)
    url = reverse("admin:orders_order_change", args=[order.pk])

    # What a browser posts, with read-only fields forged in.
    response = post_change_form(
        admin_client_,
        url,
        customer_email="a@example.com",
        status=S.PAID,
        total="1.00",
        captured_amount="999.00",
        refunded_amount="0.00",
    )

    assert_saved(response)
    order = Order.objects.get(pk=order.pk)
    assert order.customer_email == "a@example.com"
    assert order.status == S.PARTIALLY_PAID
    assert (order.total, order.captured_amount) == (Decimal("100.00"), Decimal("50.00"))


@pytest.mark.django_db
def test_history_revert_is_refused_even_when_posted(admin_client_, make_order):
    order = make_order(S.PAID)
    first = order.history.last()
    url = reverse("admin:orders_order_simple_history", args=[order.pk, first.history_id])

    assert admin_client_.get(url).status_code == 200
    response = admin_client_.post(url, {"customer_email": "x@example.com"})

    assert response.status_code == 403
    order.refresh_from_db()
    assert order.status == S.PAID


@pytest.mark.django_db
def test_history_page_lists_channel_and_reason(admin_client_, make_order):
    order = make_order(S.PAID)

    page = admin_client_.get(reverse("admin:orders_order_history", args=[order.pk]))

    assert page.status_code == 200
    assert "Payment captured: 100.00 USD" in page.text


@pytest.mark.django_db
def test_history_links_the_user_only_for_staff_who_may_open_users(
    admin_client_, make_order, supervisor
):
    order = override_status(
        make_order(S.PAID), S.REFUNDED, user=supervisor, reason="goodwill", allow_discouraged=True
    )
    user_page = reverse("admin:auth_user_change", args=[supervisor.pk])
    history = reverse("admin:orders_order_history", args=[order.pk])
    clerk = Client()
    clerk.force_login(staff_with("view_order"))

    page = clerk.get(history)

    # A clerk following the link would land on "403 Forbidden".
    assert clerk.get(user_page).status_code == 403
    assert page.status_code == 200
    assert supervisor.username in page.text
    assert user_page not in page.text

    assert user_page in admin_client_.get(history).text


@pytest.mark.django_db
def test_ledger_and_orders_cannot_be_added_or_deleted_in_admin(admin_client_, make_order):
    order = make_order(S.PAID)
    row = order.transactions.get()

    assert admin_client_.get(reverse("admin:orders_order_add")).status_code == 403
    assert admin_client_.get(reverse("admin:payments_paymenttransaction_add")).status_code == 403
    delete = reverse("admin:payments_paymenttransaction_delete", args=[row.pk])
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    assert order.transactions.count() == 1


@pytest.mark.django_db
def test_webhook_secret_is_never_shown_and_kept_when_left_blank(admin_client_, online_method):
    url = reverse("admin:payments_paymentmethod_change", args=[online_method.pk])

    page = admin_client_.get(url)
    assert page.status_code == 200
    assert online_method.webhook_secret not in page.text

    assert_saved(post_change_form(admin_client_, url, page=page, name="Renamed gateway"))
    online_method.refresh_from_db()
    assert online_method.name == "Renamed gateway"
    assert online_method.webhook_secret == "whsec_test_only_secret"

    assert_saved(post_change_form(admin_client_, url, webhook_secret="whsec_rotated"))
    assert PaymentMethod.objects.get(pk=online_method.pk).webhook_secret == "whsec_rotated"


@pytest.mark.django_db
def test_staff_without_permissions_sees_no_orders(client, staff_user, make_order):
    make_order(S.PAID)
    client.force_login(staff_user)

    assert client.get(reverse("admin:orders_order_changelist")).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("currency", "total", "shown"),
    [("USD", "100.00", "100.00 USD"), ("JPY", "1500", "1500 JPY"), ("KWD", "1.234", "1.234 KWD")],
)
def test_order_page_shows_amounts_in_the_currencys_own_decimals(
    admin_client_, online_method, currency, total, shown
):
    from orders.services import place_order
    from tests.factories import bring_to, next_number

    order = place_order(
        number=next_number(), total=total, currency=currency, payment_method=online_method
    )
    bring_to(order, S.PAID)

    page = admin_client_.get(reverse("admin:orders_order_change", args=[order.pk]))

    assert page.status_code == 200
    # The total, and the ledger's capture row, as staff count that currency.
    assert page.text.count(shown) >= 2
    storage = f"{Decimal(total):.3f}"  # how the database holds it: 100.000, 1500.000
    if storage != total:
        assert storage not in page.text
