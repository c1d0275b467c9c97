"""History pages: labels not stored values, "-" for nothing, past versions read-only."""

import re
from html import unescape

import pytest
from django.urls import reverse

from orderflow.audit import Channel, audit_context
from orders.models import Order
from orders.models import PaymentStatus as S
from orders.services import override_status, update_order_details
from payments.models import PaymentMethod
from tests.factories import PaymentMethodFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(client, admin_user):
    client.force_login(admin_user)
    return client


def cells(html: str) -> list[list[str]]:
    """The history table's rows, each a list of its cells' text."""
    table = re.search(r'<table id="change-history".*?</table>', html, re.S).group(0)
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    return [
        [
            " ".join(unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
        ]
        for row in rows
    ]


def history_rows(client, model_name: str, pk: int) -> list[list[str]]:
    response = client.get(reverse(f"admin:{model_name}_history", args=[pk]))
    assert response.status_code == 200
    return cells(response.text)


def test_order_history_shows_labels_and_dashes(admin_client_, make_order):
    order = make_order(S.PAID)

    header, *rows = history_rows(admin_client_, "orders_order", order.pk)

    assert header[1:3] == ["Payment status", "Channel"]
    newest, placed = rows
    assert newest[1:3] == ["Paid", "Gateway"]
    assert placed[1:3] == ["Awaiting payment", "Storefront"]
    # Who: nobody (the gateway, the storefront) reads "-", not "None".
    assert newest[5] == placed[5] == "-"
    assert "Payment status: Awaiting payment → Paid" in newest[7]
    assert placed[7] == "-"
    assert "None" not in " ".join(newest + placed)


def test_an_empty_reason_reads_as_a_dash(admin_client_, make_order, supervisor):
    order = make_order(S.PAID)
    order.history.filter(pk=order.history.first().pk).update(history_change_reason="")

    newest = history_rows(admin_client_, "orders_order", order.pk)[1]

    assert newest[6] == "-"


def test_payment_method_history_shows_labels(admin_client_):
    method = PaymentMethodFactory(code="wire", offline=True)
    method.name = "Bank wire"
    with audit_context(channel=Channel.ADMIN):
        method.save(update_fields=["name"])

    header, newest, created = history_rows(admin_client_, "payments_paymentmethod", method.pk)

    assert header[1:5] == ["Name", "Kind", "Active", "Channel"]
    assert newest[1:3] == ["Bank wire", "Offline"]
    assert (newest[4], created[4]) == ("Admin", "System")
    assert newest[7] == created[7] == "-"
    assert "Name: Wire → Bank wire" in newest[9]


def version_page(client, model_name: str, pk: int, record) -> str:
    url = reverse(f"admin:{model_name}_simple_history", args=[pk, record.history_id])
    response = client.get(url)
    assert response.status_code == 200
    return response.text


def editable_inputs(html: str) -> list[str]:
    form = re.search(r"<form .*?</form>", html, re.S).group(0)
    fields = re.findall(r"<(?:input|select|textarea)\b[^>]*>", form)
    return [f for f in fields if 'type="hidden"' not in f]


def test_a_past_order_version_shows_its_own_values_read_only(
    admin_client_, admin_user, make_order, supervisor
):
    order = make_order(S.PAID, customer_email="old@example.com")
    update_order_details(order, user=admin_user, customer_email="new@example.com")
    # Today the order needs attention (money kept, status Cancelled).
    override_status(
        Order.objects.get(pk=order.pk),
        S.CANCELLED,
        user=supervisor,
        reason="phone call",
        allow_discouraged=True,
    )
    placed = order.history.earliest("history_id")

    html = version_page(admin_client_, "orders_order", order.pk, placed)

    assert "Awaiting payment" in html and "old@example.com" in html
    assert "new@example.com" not in html
    assert editable_inputs(html) == []
    assert 'name="_save"' not in html and "Revert" not in html
    # Today's attention reasons and today's ledger are not part of that version.
    assert "but the status is" not in html
    assert "Needs attention" not in html
    assert 'id="transactions-group"' not in html
    assert "This is how it was recorded on" in html


def test_a_past_payment_method_version_is_read_only_without_secrets(admin_client_):
    method = PaymentMethodFactory(code="testpay", name="Test gateway")
    first = method.history.get()
    method.name = "Renamed"
    method.save(update_fields=["name"])

    html = version_page(admin_client_, "payments_paymentmethod", method.pk, first)

    assert "Test gateway" in html and "Renamed" not in html
    assert editable_inputs(html) == []
    assert "webhook secret" not in html.lower()
    assert 'name="_save"' not in html


def test_reverting_a_payment_method_is_refused_on_the_server(admin_client_):
    method = PaymentMethodFactory(code="testpay", name="Test gateway")
    first = method.history.get()
    method.name = "Renamed"
    method.save(update_fields=["name"])
    url = reverse("admin:payments_paymentmethod_simple_history", args=[method.pk, first.history_id])

    response = admin_client_.post(url, {"name": "Test gateway", "code": "testpay", "_save": "1"})

    assert response.status_code == 403
    assert PaymentMethod.objects.get(pk=method.pk).name == "Renamed"
    assert method.history.count() == 2


@pytest.mark.parametrize("version", ["abc", "999999", "-1"])
def test_an_unknown_version_is_not_found(admin_client_, make_order, version):
    order = make_order(S.PAID)
    url = reverse("admin:orders_order_simple_history", args=[order.pk, version])

    assert admin_client_.get(url).status_code == 404


def test_an_unknown_order_in_a_version_url_is_not_found(admin_client_, make_order):
    order = make_order(S.PAID)
    url = reverse("admin:orders_order_simple_history", args=["nope", order.history.first().pk])

    assert admin_client_.get(url).status_code == 404
