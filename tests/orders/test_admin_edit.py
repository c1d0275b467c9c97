"""Saving an order in the admin writes the edited fields, never the money or the status."""

import threading
from decimal import Decimal
from html import unescape

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.db import connections
from django.db.models import Sum
from django.urls import reverse

from orders.admin import OrderAdmin
from orders.exceptions import ConcurrentChange
from orders.models import Order
from orders.models import PaymentStatus as S
from payments.ledger_totals import ledger_totals_mismatches
from payments.services import apply_gateway_event
from tests.admin_forms import assert_saved, browser_post_data
from tests.factories import event


@pytest.fixture
def admin_client_(client, admin_user):
    client.force_login(admin_user)
    return client


def change_url(order):
    return reverse("admin:orders_order_change", args=[order.pk])


def ledger_sum(order, kind):
    return order.transactions.filter(kind=kind).aggregate(s=Sum("amount"))["s"] or Decimal(0)


def messages_of(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def meanwhile(monkeypatch):
    """
    Run ``action`` while the admin handles the POST: after it has read the
    order, before it writes. That is the window a real callback hits; a
    capture made before the POST is simply read fresh by the admin.
    """

    def install(action):
        read = OrderAdmin.get_object

        def get_object(self, request, object_id, from_field=None):
            obj = read(self, request, object_id, from_field)
            if request.method == "POST":
                action(obj)
            return obj

        monkeypatch.setattr(OrderAdmin, "get_object", get_object)

    return install


@pytest.mark.django_db
def test_admin_save_keeps_a_capture_committed_meanwhile(
    admin_client_, admin_user, make_order, meanwhile
):
    order = make_order(S.PARTIALLY_PAID)  # 50.00 of 100.00 captured
    page = admin_client_.get(change_url(order))
    meanwhile(lambda obj: apply_gateway_event(obj, event("captured", "30.00")))

    response = admin_client_.post(
        change_url(order), browser_post_data(page, customer_email="new@example.com")
    )

    assert_saved(response)
    order = Order.objects.get(pk=order.pk)
    assert order.captured_amount == ledger_sum(order, "capture") == Decimal("80.00")
    assert order.refunded_amount == ledger_sum(order, "refund") == Decimal("0.00")
    assert list(ledger_totals_mismatches()) == []
    latest = order.history.first()
    assert (latest.customer_email, latest.channel, latest.history_user) == (
        "new@example.com",
        "admin",
        admin_user,
    )
    assert latest.history_change_reason == "Order details changed: customer email."
    # The whole captured amount can be refunded, and no more.
    refund = apply_gateway_event(order, event("refunded", "80.00")).order
    assert (refund.status, refund.refunded_amount) == (S.REFUNDED, Decimal("80.00"))


@pytest.mark.django_db
def test_status_changed_meanwhile_is_a_message_not_a_500(admin_client_, make_order, meanwhile):
    order = make_order(S.AUTHORIZED)
    page = admin_client_.get(change_url(order))
    meanwhile(lambda obj: apply_gateway_event(obj, event("captured", "100.00")))

    response = admin_client_.post(
        change_url(order), browser_post_data(page, customer_email="new@example.com")
    )

    assert_saved(response)
    assert (
        f"The payment status of order {order.number} changed to Paid while you were editing it."
        in messages_of(response)
    )
    order = Order.objects.get(pk=order.pk)
    assert (order.status, order.customer_email) == (S.PAID, "new@example.com")
    assert order.captured_amount == Decimal("100.00")


@pytest.mark.django_db
def test_concurrent_change_is_an_error_message_and_saves_nothing(
    admin_client_, make_order, monkeypatch
):
    order = make_order(S.PAID, customer_email="old@example.com")
    page = admin_client_.get(change_url(order))

    def refuse(order, **kwargs):
        raise ConcurrentChange("Order was changed by someone else at the same moment; try again.")

    monkeypatch.setattr("orders.admin.update_order_details", refuse)
    response = admin_client_.post(
        change_url(order), browser_post_data(page, customer_email="new@example.com")
    )

    assert response.status_code == 302
    assert response.url == change_url(order)
    assert "changed by someone else" in " ".join(messages_of(response))
    assert Order.objects.get(pk=order.pk).customer_email == "old@example.com"
    assert not LogEntry.objects.exists()


@pytest.mark.django_db
def test_saving_the_form_unchanged_writes_nothing(admin_client_, make_order):
    order = make_order(S.PAID, customer_email="same@example.com")
    page = admin_client_.get(change_url(order))
    before = (order.history.count(), Order.objects.get(pk=order.pk).updated_at)

    response = admin_client_.post(change_url(order), browser_post_data(page))

    assert_saved(response)
    assert (order.history.count(), Order.objects.get(pk=order.pk).updated_at) == before
    # Staff are told nothing changed, not that it "was changed successfully".
    assert response.url == change_url(order)
    assert messages_of(response) == ["Nothing to save: the customer e-mail is unchanged."]
    assert not LogEntry.objects.exists()


@pytest.mark.django_db
def test_order_page_reports_running_totals_that_disagree_with_the_ledger(
    admin_client_, make_order, django_assert_num_queries
):
    order = make_order(S.PARTIALLY_PAID)  # 50.00 captured, in the ledger
    apply_gateway_event(order, event("captured", "30.00"))
    # What a whole-row save of a stale order did: the capture erased from the column.
    Order.objects.filter(pk=order.pk).update(captured_amount=Decimal("50.00"))
    expected = "The captured total (50.00 USD) is not the sum of the ledger's captures (80.00 USD)."

    page = admin_client_.get(change_url(order))
    reloaded = Order.objects.get(pk=order.pk)
    with django_assert_num_queries(1):
        reasons = reloaded.ledger_mismatch_reasons()

    assert page.status_code == 200
    assert expected in unescape(page.text)
    assert reasons == [expected]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_capture_committed_by_another_connection_survives_the_admin_save(
    admin_client_, make_order, meanwhile
):
    order = make_order(S.PARTIALLY_PAID)
    page = admin_client_.get(change_url(order))

    def capture_elsewhere(obj):
        errors = []

        def work():
            try:
                apply_gateway_event(Order.objects.get(pk=obj.pk), event("captured", "30.00"))
            except Exception as exc:  # reported back to the test
                errors.append(exc)
            finally:
                connections.close_all()

        thread = threading.Thread(target=work)
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive() and not errors, errors

    meanwhile(capture_elsewhere)
    response = admin_client_.post(
        change_url(order), browser_post_data(page, customer_email="new@example.com")
    )

    assert_saved(response)
    order = Order.objects.get(pk=order.pk)
    assert order.captured_amount == ledger_sum(order, "capture") == Decimal("80.00")
    assert order.customer_email == "new@example.com"
