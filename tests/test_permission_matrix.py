"""
Who may do what in the admin, checked with crafted requests.

Nobody, not even a superuser, edits or deletes history records, ledger rows
or gateway events, deletes an order, or reverts one from its history. The
staff groups' users reach exactly the pages their group allows.
"""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from orders.models import Order
from orders.models import PaymentStatus as S
from payments.models import EventOutcome, GatewayEvent, PaymentMethod, PaymentTransaction
from tests.admin_forms import browser_post_data

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("staff_groups")]


@pytest.fixture
def paid_order(make_order):
    order = make_order(S.PAID, customer_email="kept@example.com")
    GatewayEvent.objects.create(
        payment_method=order.payment_method,
        event_id="evt_matrix",
        event_type="payment.captured",
        outcome=EventOutcome.APPLIED,
        order=order,
        raw_body="{}",
    )
    return order


def snapshot() -> dict:
    """Everything the refused requests must leave as it was."""
    return {
        "orders": list(Order.objects.values_list("pk", "status", "customer_email", "total")),
        "order history": list(
            Order.history.values_list("history_id", "status", "history_change_reason")
        ),
        "ledger": list(PaymentTransaction.objects.values_list("pk", "kind", "amount", "reference")),
        "events": list(GatewayEvent.objects.values_list("pk", "outcome", "event_type", "detail")),
        "methods": list(PaymentMethod.objects.values_list("pk", "name", "code")),
        "method history": list(PaymentMethod.history.values_list("history_id", "name")),
    }


def bulk_delete(client, model: str, pk: int):
    url = reverse(f"admin:{model}_changelist")
    return client.post(
        url, {"action": "delete_selected", "_selected_action": [pk], "post": "yes", "index": 0}
    )


def refused(name: str, response) -> bool:
    """
    403; or, for a bulk delete, the changelist shown again: an admin that offers
    no such action ignores it (``test_no_delete_action_is_offered...``), and the
    snapshot shows nothing was deleted.
    """
    if response.status_code == 403:
        return True
    return name.endswith("bulk delete") and response.status_code in (200, 302)


def test_superuser_cannot_delete_orders_nor_touch_the_ledger_events_or_history(
    admin_client, paid_order
):
    row = paid_order.transactions.get()
    event = paid_order.gateway_events.get()
    version = paid_order.history.earliest("history_id")
    method = paid_order.payment_method
    before = snapshot()

    responses = {
        "order delete": admin_client.post(
            reverse("admin:orders_order_delete", args=[paid_order.pk]), {"post": "yes"}
        ),
        "order bulk delete": bulk_delete(admin_client, "orders_order", paid_order.pk),
        "order revert": admin_client.post(
            reverse("admin:orders_order_simple_history", args=[paid_order.pk, version.pk]),
            {"customer_email": "reverted@example.com", "_save": "Revert"},
        ),
        "ledger change": admin_client.post(
            reverse("admin:payments_paymenttransaction_change", args=[row.pk]),
            {"amount": "1.00", "reference": "edited", "kind": "refund"},
        ),
        "ledger delete": admin_client.post(
            reverse("admin:payments_paymenttransaction_delete", args=[row.pk]), {"post": "yes"}
        ),
        "ledger bulk delete": bulk_delete(admin_client, "payments_paymenttransaction", row.pk),
        "event change": admin_client.post(
            reverse("admin:payments_gatewayevent_change", args=[event.pk]),
            {"outcome": "ignored", "detail": "edited", "event_type": "edited"},
        ),
        "event delete": admin_client.post(
            reverse("admin:payments_gatewayevent_delete", args=[event.pk]), {"post": "yes"}
        ),
        "event bulk delete": bulk_delete(admin_client, "payments_gatewayevent", event.pk),
        "method delete": admin_client.post(
            reverse("admin:payments_paymentmethod_delete", args=[method.pk]), {"post": "yes"}
        ),
        "method bulk delete": bulk_delete(admin_client, "payments_paymentmethod", method.pk),
        "method revert": admin_client.post(
            reverse(
                "admin:payments_paymentmethod_simple_history",
                args=[method.pk, method.history.earliest("history_id").pk],
            ),
            {"name": "reverted", "code": method.code, "_save": "Revert"},
        ),
    }

    assert {name for name, response in responses.items() if not refused(name, response)} == set()
    assert snapshot() == before


@pytest.mark.parametrize(
    "model", ["orders_order", "payments_paymenttransaction", "payments_gatewayevent"]
)
def test_no_delete_action_is_offered_even_to_a_superuser(admin_client, paid_order, model):
    response = admin_client.get(reverse(f"admin:{model}_changelist"))

    assert response.status_code == 200
    assert "delete_selected" not in response.text


def test_history_records_have_no_admin_pages_of_their_own(admin_client, paid_order):
    from django.contrib import admin

    history_models = {Order.history.model, PaymentMethod.history.model}
    assert not history_models & set(admin.site._registry)
    assert admin_client.get("/admin/orders/historicalorder/").status_code == 404


# -- the staff groups ----------------------------------------------------------


@pytest.fixture
def member(django_user_model):
    def make(group: str | None):
        user = django_user_model.objects.create_user(
            username=f"u-{group or 'none'}".replace(" ", "-"), is_staff=True
        )
        if group:
            user.groups.add(Group.objects.get(name=group))
        return user

    return make


def pages(order: Order) -> dict[str, str]:
    event = order.gateway_events.get()
    row = order.transactions.get()
    return {
        "order list": reverse("admin:orders_order_changelist"),
        "order page": reverse("admin:orders_order_change", args=[order.pk]),
        "order history": reverse("admin:orders_order_history", args=[order.pk]),
        "event list": reverse("admin:payments_gatewayevent_changelist"),
        "event page": reverse("admin:payments_gatewayevent_change", args=[event.pk]),
        "ledger list": reverse("admin:payments_paymenttransaction_changelist"),
        "ledger page": reverse("admin:payments_paymenttransaction_change", args=[row.pk]),
        "method list": reverse("admin:payments_paymentmethod_changelist"),
    }


@pytest.mark.parametrize(
    "group, expected",
    [
        (None, 403),
        ("Order viewer", 200),
        ("Payments clerk", 200),
        ("Payments manager", 200),
    ],
)
def test_each_group_sees_the_order_and_event_pages_it_may(
    client, member, paid_order, group, expected
):
    client.force_login(member(group))

    codes = {name: client.get(url).status_code for name, url in pages(paid_order).items()}

    assert codes == dict.fromkeys(codes, expected)


@pytest.mark.parametrize(
    "group, may_edit",
    [("Order viewer", False), ("Payments clerk", True), ("Payments manager", True)],
)
def test_only_clerks_and_managers_may_edit_the_customer_email(
    client, member, paid_order, group, may_edit
):
    client.force_login(member(group))
    url = reverse("admin:orders_order_change", args=[paid_order.pk])

    page = client.get(url)
    # A viewer's page has no e-mail form at all: what a forger would post.
    data = (
        browser_post_data(page, customer_email="new@example.com")
        if may_edit
        else {"customer_email": "new@example.com"}
    )
    response = client.post(url, data)

    assert ('name="customer_email"' in page.text) is may_edit
    assert (response.status_code == 403) is not may_edit
    expected = "new@example.com" if may_edit else "kept@example.com"
    assert Order.objects.get(pk=paid_order.pk).customer_email == expected


@pytest.mark.parametrize(
    "group, may_acknowledge, may_replay",
    [
        ("Order viewer", False, False),
        ("Payments clerk", True, False),
        ("Payments manager", True, True),
    ],
)
def test_event_actions_follow_the_group(
    client, member, paid_order, group, may_acknowledge, may_replay
):
    client.force_login(member(group))
    event = paid_order.gateway_events.get()
    before = snapshot()

    acknowledge = client.post(reverse("admin:payments_gatewayevent_acknowledge", args=[event.pk]))
    replay = client.post(reverse("admin:payments_gatewayevent_replay", args=[event.pk]))

    assert (acknowledge.status_code == 403) is not may_acknowledge
    assert (replay.status_code == 403) is not may_replay
    # A processed event has nothing to acknowledge or replay: allowed or not,
    # nothing changes.
    assert snapshot() == before


@pytest.mark.parametrize(
    "group, may_change",
    [("Order viewer", False), ("Payments clerk", False), ("Payments manager", True)],
)
def test_only_managers_may_change_payment_methods(client, member, paid_order, group, may_change):
    client.force_login(member(group))
    method = paid_order.payment_method

    page = client.get(reverse("admin:payments_paymentmethod_change", args=[method.pk]))

    assert page.status_code == 200
    assert ('name="name"' in page.text) is may_change
