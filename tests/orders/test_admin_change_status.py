"""The admin's "Change payment status": form, confirmation, summary; one order or many."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core import signing
from django.urls import reverse

import orders.admin_status
from orderflow.audit import Channel
from orders.admin_status import MAX_ORDERS, PLAN_SALT
from orders.models import Order
from orders.models import PaymentStatus as S
from orders.policy import discouraged_reason
from orders.services import override_status
from tests.admin_forms import browser_post_data

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:orders_order_changelist"
MANY = "admin:orders_order_change_status_many"
PAID_TO_CANCELLED = discouraged_reason(S.PAID, S.CANCELLED)


def staff(django_user_model, username: str, *codenames: str):
    user = django_user_model.objects.create_user(username=username, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=codenames, content_type__app_label="orders")
    )
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


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


@pytest.fixture
def viewer(django_user_model):
    return staff(django_user_model, "viewer", "view_order")


def as_user(client, user):
    client.force_login(user)
    return client


def single_url(order) -> str:
    return reverse("admin:orders_order_change_status", args=[order.pk])


def status_of(order) -> str:
    return Order.objects.get(pk=order.pk).status


def confirmation(client, url: str, new_status: str, reason: str = "checked with the bank", ids=()):
    data = {"step": "confirm", "new_status": new_status, "reason": reason}
    if ids:
        data["ids"] = [str(pk) for pk in ids]
    page = client.post(url, data)
    assert page.status_code == 200, page.status_code
    return page


def apply(client, url: str, page, **changes):
    data = browser_post_data(page, form_id="change-status-confirm-form", **changes)
    return client.post(url, data)


def results(summary_page) -> dict[str, str]:
    """Order number -> result, from the summary page's context."""
    return {
        (line["order"].number if line["order"] else str(line["pk"])): line["result"]
        for line in summary_page.context["lines"]
    }


# -- the URL others link to -------------------------------------------------


def test_single_order_url_is_named_and_takes_the_pk(make_order):
    order = make_order()

    assert single_url(order) == f"/admin/orders/order/{order.pk}/change-status/"


# -- one order ----------------------------------------------------------------


def test_one_order_form_confirmation_summary_and_history(client, manager, make_order):
    order = make_order(S.AUTHORIZED)
    as_user(client, manager)

    form = client.get(single_url(order))
    assert form.status_code == 200
    assert order.number in form.text and 'name="reason"' in form.text

    page = client.post(
        single_url(order),
        browser_post_data(
            form, form_id="change-status-form", new_status=S.DECLINED, reason="bank said no"
        ),
    )
    assert page.status_code == 200
    (row,) = page.context["rows"]
    assert (row.order.number, row.status, row.new_status, row.warning) == (
        order.number,
        S.AUTHORIZED,
        S.DECLINED,
        None,
    )
    assert 'class="status-badge status-authorized"' in page.text
    assert 'class="status-badge status-declined"' in page.text
    assert status_of(order) == S.AUTHORIZED  # nothing before the confirmation

    summary = apply(client, single_url(order), page)

    assert summary.status_code == 200
    assert results(summary) == {order.number: "changed"}
    assert status_of(order) == S.DECLINED
    record = Order.objects.get(pk=order.pk).history.first()
    assert (record.status, record.history_user, record.channel) == (
        S.DECLINED,
        manager,
        Channel.ADMIN,
    )
    assert record.history_change_reason == "bank said no"
    assert reverse("admin:orders_order_history", args=[order.pk]) in summary.text


def test_form_and_confirmation_say_that_no_money_moves(client, manager, make_order):
    # "Refunded" chosen here refunds nobody: staff must not read it as a refund.
    order = make_order(S.PAID)
    as_user(client, manager)

    form = client.get(single_url(order))
    page = client.post(
        single_url(order),
        browser_post_data(form, form_id="change-status-form", new_status=S.REFUNDED, reason="r"),
    )

    assert "no money is captured, refunded or recorded" in form.text
    assert "no money is captured, refunded or recorded" in page.text
    assert order.transactions.count() == 1


def test_blank_reason_is_asked_again_and_nothing_changes(client, manager, make_order):
    order = make_order()
    as_user(client, manager)

    page = client.post(
        single_url(order), {"step": "confirm", "new_status": S.CANCELLED, "reason": "   "}
    )

    assert page.status_code == 200
    assert "reason" in page.context["form"].errors
    assert "plan" not in page.context
    assert status_of(order) == S.AWAITING_PAYMENT


def test_unknown_target_status_is_a_form_error(client, manager, make_order):
    order = make_order()
    as_user(client, manager)

    page = client.post(single_url(order), {"step": "confirm", "new_status": "lost", "reason": "x"})

    assert page.status_code == 200
    assert "new_status" in page.context["form"].errors


def test_target_equal_to_current_is_already_there(client, manager, make_order):
    order = make_order(S.PAID)
    records = order.history.count()
    as_user(client, manager)

    page = confirmation(client, single_url(order), S.PAID)

    assert "Already there: nothing to change." in page.text
    assert 'id="change-status-confirm-form"' not in page.text
    assert 'id="nothing-to-change"' in page.text
    assert order.history.count() == records


def test_unknown_order_id_redirects_with_a_message(client, manager, make_order):
    order = make_order()
    as_user(client, manager)

    response = client.get(reverse("admin:orders_order_change_status", args=[order.pk + 999]))

    assert response.status_code == 302
    assert response.url == reverse(CHANGELIST)
    messages = [str(m) for m in response.wsgi_request._messages]
    assert f"There is no order with id {order.pk + 999}." in messages


# -- discouraged changes ------------------------------------------------------


def test_manager_sees_the_warning_and_must_tick_to_confirm(client, manager, make_order):
    order = make_order(S.PAID)
    as_user(client, manager)

    page = confirmation(client, single_url(order), S.CANCELLED)

    assert PAID_TO_CANCELLED in page.text
    assert "use Refunded instead of Cancelled" in PAID_TO_CANCELLED
    assert 'name="confirm_discouraged"' in page.text

    unticked = apply(client, single_url(order), page, confirm_discouraged=None)
    assert results(unticked) == {order.number: "discouraged"}
    assert status_of(order) == S.PAID

    ticked = apply(client, single_url(order), page, confirm_discouraged="yes")
    assert results(ticked) == {order.number: "changed"}
    assert status_of(order) == S.CANCELLED
    reason = Order.objects.get(pk=order.pk).history.first().history_change_reason
    assert "checked with the bank" in reason and "discouraged change confirmed" in reason


def test_clerk_sees_the_warning_and_cannot_confirm(client, clerk, make_order):
    order = make_order(S.PAID)
    as_user(client, clerk)

    page = confirmation(client, single_url(order), S.CANCELLED)

    assert PAID_TO_CANCELLED in page.text
    assert 'id="manager-must-confirm"' in page.text
    assert "A manager must confirm" in page.text
    assert 'name="confirm_discouraged"' not in page.text
    # Nothing else to change: no form to send at all.
    assert 'id="change-status-confirm-form"' not in page.text
    assert status_of(order) == S.PAID


def test_clerk_crafting_the_confirmation_is_refused_by_the_server(client, clerk, make_order):
    paid, waiting = make_order(S.PAID), make_order()
    as_user(client, clerk)
    url = reverse(MANY)
    page = confirmation(client, url, S.CANCELLED, ids=[paid.pk, waiting.pk])
    assert 'name="confirm_discouraged"' not in page.text

    summary = apply(client, url, page, confirm_discouraged="yes")

    assert results(summary) == {paid.number: "permission", waiting.number: "changed"}
    assert "may not confirm a discouraged" in summary.text
    assert (status_of(paid), status_of(waiting)) == (S.PAID, S.CANCELLED)


# -- many orders from the list -------------------------------------------------


def test_list_action_changes_many_orders(client, manager, make_order):
    chosen = [make_order(S.AWAITING_PAYMENT) for _ in range(3)]
    already = make_order(S.DECLINED)
    left_out = make_order()
    as_user(client, manager)
    selected = [str(order.pk) for order in [*chosen, already]]

    form = client.post(
        reverse(CHANGELIST), {"action": "change_payment_status", "_selected_action": selected}
    )
    assert form.status_code == 200
    assert form.context["pks"] == sorted(int(pk) for pk in selected)

    page = client.post(
        reverse(MANY),
        browser_post_data(
            form, form_id="change-status-form", new_status=S.DECLINED, reason="fraud check"
        ),
    )
    assert [row.order.number for row in page.context["rows"]] == [
        o.number for o in [*chosen, already]
    ]
    assert page.text.count("Already there: nothing to change.") == 1

    summary = apply(client, reverse(MANY), page)

    assert results(summary) == {
        **{order.number: "changed" for order in chosen},
        already.number: "already",
    }
    assert [status_of(order) for order in chosen] == [S.DECLINED] * 3
    assert status_of(left_out) == S.AWAITING_PAYMENT
    assert "Changed: 3. Already there: 1. Refused: 0. Failed: 0." in summary.text


def test_orders_changed_since_the_confirmation_are_reported_not_changed(
    client, manager, supervisor, make_order
):
    moved, steady = make_order(), make_order()
    as_user(client, manager)
    page = confirmation(client, reverse(MANY), S.DECLINED, ids=[moved.pk, steady.pk])
    override_status(moved, S.AUTHORIZED, user=supervisor, reason="a callback, meanwhile")

    summary = apply(client, reverse(MANY), page)

    assert results(summary) == {moved.number: "moved", steady.number: "changed"}
    assert (status_of(moved), status_of(steady)) == (S.AUTHORIZED, S.DECLINED)


def test_posting_the_confirmation_again_changes_nothing_more(client, manager, make_order):
    order = make_order()
    as_user(client, manager)
    page = confirmation(client, single_url(order), S.DECLINED)
    apply(client, single_url(order), page)
    records = order.history.count()

    again = apply(client, single_url(order), page)

    assert results(again) == {order.number: "already"}
    assert order.history.count() == records


def test_ids_that_do_not_exist_are_listed_and_reported(client, manager, make_order):
    order = make_order()
    missing = order.pk + 999
    as_user(client, manager)

    page = confirmation(client, reverse(MANY), S.CANCELLED, ids=[order.pk, missing])
    assert "Not found: there is no order with this id." in page.text

    summary = apply(client, reverse(MANY), page)
    assert results(summary) == {order.number: "changed", str(missing): "not_found"}


@pytest.mark.parametrize("bad", ["abc", "1.5", "-3", "", " ", "١٢", "9" * 30, "1e3"])
def test_odd_ids_are_a_clear_error(client, manager, make_order, bad):
    order = make_order()
    as_user(client, manager)

    response = client.post(
        reverse(MANY),
        {"step": "confirm", "ids": [str(order.pk), bad], "new_status": S.CANCELLED, "reason": "x"},
    )

    assert response.status_code == 302
    assert response.url == reverse(CHANGELIST)
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("is not an order id" in m for m in messages), messages
    assert status_of(order) == S.AWAITING_PAYMENT


def test_no_ids_at_all_is_a_clear_error(client, manager):
    as_user(client, manager)

    response = client.post(reverse(MANY), {"step": "confirm", "new_status": S.CANCELLED})

    assert response.status_code == 302
    assert "No orders were selected." in [str(m) for m in response.wsgi_request._messages]


def test_more_ids_than_allowed_are_refused_with_a_message(client, manager):
    as_user(client, manager)
    ids = [str(pk) for pk in range(1, MAX_ORDERS + 2)]

    response = client.post(reverse(MANY), {"step": "confirm", "ids": ids})

    assert response.status_code == 302
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("set_payment_status command" in m for m in messages), messages


def test_thousands_of_ids_are_a_400_not_a_crash(client, manager):
    as_user(client, manager)
    ids = [str(pk) for pk in range(1, 5001)]

    response = client.post(reverse(MANY), {"step": "confirm", "ids": ids})

    assert response.status_code == 400


def test_get_on_the_many_url_sends_back_to_the_list(client, manager):
    as_user(client, manager)

    response = client.get(reverse(MANY))

    assert response.status_code == 302
    assert response.url == reverse(CHANGELIST)


# -- the confirmation cannot be skipped or forged -----------------------------


def test_final_step_without_the_confirmation_page_changes_nothing(client, manager, make_order):
    order = make_order()
    as_user(client, manager)

    response = client.post(
        single_url(order),
        {"step": "apply", "new_status": S.CANCELLED, "reason": "x", "confirm_discouraged": "yes"},
    )

    assert response.status_code == 400
    assert "was not confirmed on the confirmation page" in response.text
    assert status_of(order) == S.AWAITING_PAYMENT


def test_forged_plan_is_refused(client, manager, make_order):
    order = make_order()
    as_user(client, manager)
    page = confirmation(client, single_url(order), S.DECLINED)
    plan = page.context["plan"]
    forged = plan[:-3] + ("AAA" if not plan.endswith("AAA") else "BBB")

    response = apply(client, single_url(order), page, plan=forged)

    assert response.status_code == 400
    assert status_of(order) == S.AWAITING_PAYMENT


def test_plan_signed_for_another_user_is_refused(client, manager, clerk, make_order):
    order = make_order()
    as_user(client, manager)
    page = confirmation(client, single_url(order), S.DECLINED)

    as_user(client, clerk)
    response = apply(client, single_url(order), page)

    assert response.status_code == 400
    assert "does not match" in response.text
    assert status_of(order) == S.AWAITING_PAYMENT


def test_plan_for_one_order_cannot_be_used_for_others(client, manager, make_order):
    confirmed, other = make_order(), make_order()
    as_user(client, manager)
    page = confirmation(client, single_url(confirmed), S.DECLINED)
    data = browser_post_data(page, form_id="change-status-confirm-form")

    response = client.post(reverse(MANY), {**data, "ids": [str(confirmed.pk), str(other.pk)]})

    assert response.status_code == 400
    assert (status_of(confirmed), status_of(other)) == (S.AWAITING_PAYMENT, S.AWAITING_PAYMENT)


def test_plan_naming_another_target_cannot_be_crafted_without_the_key(client, manager, make_order):
    order = make_order(S.PAID)
    as_user(client, manager)
    unsigned = signing.dumps(
        {"user": manager.pk, "to": S.CANCELLED, "reason": "x", "seen": [[order.pk, S.PAID]]},
        key="not-the-server-key",
        salt=PLAN_SALT,
    )

    response = client.post(
        single_url(order), {"step": "apply", "plan": unsigned, "confirm_discouraged": "yes"}
    )

    assert response.status_code == 400
    assert status_of(order) == S.PAID


def test_expired_confirmation_is_refused(client, manager, make_order, monkeypatch):
    order = make_order()
    as_user(client, manager)
    page = confirmation(client, single_url(order), S.DECLINED)
    monkeypatch.setattr(orders.admin_status, "PLAN_MAX_AGE", -1)

    response = apply(client, single_url(order), page)

    assert response.status_code == 400
    assert "open too long" in response.text
    assert status_of(order) == S.AWAITING_PAYMENT


# -- permissions ----------------------------------------------------------------


def test_viewer_never_sees_the_action_and_gets_403_on_the_views(client, viewer, make_order):
    order = make_order()
    as_user(client, viewer)

    changelist = client.get(reverse(CHANGELIST))
    assert changelist.status_code == 200
    assert "change_payment_status" not in changelist.text

    assert client.get(single_url(order)).status_code == 403
    posted = {"step": "confirm", "new_status": S.CANCELLED, "reason": "x"}
    assert client.post(single_url(order), posted).status_code == 403
    assert client.post(reverse(MANY), {**posted, "ids": [str(order.pk)]}).status_code == 403
    assert client.get(reverse(MANY)).status_code == 403


def test_viewer_posting_the_list_action_gets_no_form_and_nothing_changes(
    client, viewer, make_order
):
    order = make_order()
    as_user(client, viewer)

    response = client.post(
        reverse(CHANGELIST),
        {"action": "change_payment_status", "_selected_action": [str(order.pk)]},
    )

    # The action is not offered to this user: the list is shown again, not the form.
    assert response.status_code in (200, 302)
    assert "admin/orders/order/change_status_form.html" not in [
        template.name for template in response.templates
    ]
    assert status_of(order) == S.AWAITING_PAYMENT


def test_viewer_cannot_use_a_plan_confirmed_by_a_manager(client, manager, viewer, make_order):
    order = make_order()
    as_user(client, manager)
    page = confirmation(client, single_url(order), S.DECLINED)

    as_user(client, viewer)
    response = apply(client, single_url(order), page)

    assert response.status_code == 403
    assert status_of(order) == S.AWAITING_PAYMENT


def test_override_permission_without_view_permission_is_403(client, django_user_model, make_order):
    blind = staff(django_user_model, "blind", "override_payment_status")
    order = make_order()
    as_user(client, blind)

    assert client.get(single_url(order)).status_code == 403


def test_anonymous_user_is_sent_to_the_login_page(client, make_order):
    order = make_order()

    response = client.post(single_url(order), {"step": "apply"})

    assert response.status_code == 302
    assert "/admin/login/" in response.url
    assert status_of(order) == S.AWAITING_PAYMENT


def test_other_methods_are_refused(client, manager, make_order):
    order = make_order()
    as_user(client, manager)

    assert client.put(single_url(order)).status_code == 405


def test_going_back_from_the_confirmation_keeps_the_choice(client, clerk, make_order):
    order = make_order(S.PAID)
    as_user(client, clerk)
    page = confirmation(client, single_url(order), S.CANCELLED, reason="customer asked")

    form = client.post(
        single_url(order), browser_post_data(page, form_id="change-status-back-form")
    )

    assert form.status_code == 200
    assert form.context["form"].data["new_status"] == S.CANCELLED
    assert form.context["form"].data["reason"] == "customer asked"
    assert status_of(order) == S.PAID


def test_ids_beyond_the_database_range_are_not_found(client, manager, make_order):
    order = make_order()
    huge = 9_999_999_999_999_999_999  # 19 digits, beyond a 64-bit integer
    as_user(client, manager)

    single = client.get(f"/admin/orders/order/{huge}/change-status/")
    page = confirmation(client, reverse(MANY), S.CANCELLED, ids=[order.pk, huge])
    summary = apply(client, reverse(MANY), page)

    assert single.status_code == 302
    assert results(summary) == {order.number: "changed", str(huge): "not_found"}
