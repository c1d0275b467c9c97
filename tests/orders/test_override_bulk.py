"""Section 6 for many orders: override_statuses, one transaction per order."""

import pytest

import orders.services
from orderflow.audit import Channel
from orders.exceptions import InvalidOrder
from orders.models import Order
from orders.models import PaymentStatus as S
from orders.policy import discouraged_reason
from orders.services import OverrideResult, override_status, override_statuses

pytestmark = pytest.mark.django_db


def statuses(*orders_):
    return [Order.objects.get(pk=order.pk).status for order in orders_]


def test_changes_every_order_in_primary_key_order_with_history(make_order, supervisor):
    first, second, third = make_order(S.AWAITING_PAYMENT), make_order(S.AUTHORIZED), make_order()

    summary = override_statuses(
        [third, first.pk, second], S.DECLINED, user=supervisor, reason="card blocked"
    )

    assert [outcome.pk for outcome in summary.outcomes] == [first.pk, second.pk, third.pk]
    assert [outcome.result for outcome in summary.outcomes] == [OverrideResult.CHANGED] * 3
    assert [outcome.old_status for outcome in summary.outcomes] == [
        S.AWAITING_PAYMENT,
        S.AUTHORIZED,
        S.AWAITING_PAYMENT,
    ]
    assert statuses(first, second, third) == [S.DECLINED] * 3
    for order in (first, second, third):
        record = order.history.first()
        assert (record.status, record.history_user, record.history_change_reason) == (
            S.DECLINED,
            supervisor,
            "card blocked",
        )
    assert summary.counts()[OverrideResult.CHANGED] == 3


def test_duplicates_are_changed_once(make_order, supervisor):
    order = make_order()

    summary = override_statuses(
        [order, order.pk, order], S.CANCELLED, user=supervisor, reason="twice"
    )

    assert len(summary.outcomes) == 1
    assert order.history.count() == 2  # placed, then changed once


def test_order_already_in_target_is_reported_not_changed(make_order, supervisor):
    paid, waiting = make_order(S.PAID), make_order()
    records = paid.history.count()

    summary = override_statuses([paid, waiting], S.PAID, user=supervisor, reason="paid by wire")

    assert [o.pk for o in summary.already] == [paid.pk]
    assert [o.pk for o in summary.changed] == [waiting.pk]
    assert paid.history.count() == records
    assert summary.refused == [] and summary.failed == []


def test_discouraged_change_is_refused_unless_confirmed(make_order, supervisor):
    paid, waiting = make_order(S.PAID), make_order()

    refused = override_statuses([paid, waiting], S.CANCELLED, user=supervisor, reason="x")

    assert [(o.pk, o.result) for o in refused.refused] == [(paid.pk, OverrideResult.DISCOURAGED)]
    assert refused.refused[0].message == discouraged_reason(S.PAID, S.CANCELLED)
    assert statuses(paid, waiting) == [S.PAID, S.CANCELLED]

    confirmed = override_statuses(
        [paid], S.CANCELLED, user=supervisor, reason="x", allow_discouraged=True
    )

    assert [o.pk for o in confirmed.changed] == [paid.pk]
    assert statuses(paid) == [S.CANCELLED]


def test_clerk_confirming_a_discouraged_change_is_refused_others_go_through(
    make_order, overriding_clerk
):
    paid, waiting = make_order(S.PAID), make_order()

    summary = override_statuses(
        [paid, waiting], S.CANCELLED, user=overriding_clerk, reason="x", allow_discouraged=True
    )

    assert [(o.pk, o.result) for o in summary.refused] == [(paid.pk, OverrideResult.PERMISSION)]
    assert "may not confirm a discouraged" in summary.refused[0].message
    assert statuses(paid, waiting) == [S.PAID, S.CANCELLED]


def test_user_without_override_permission_is_refused_for_each_order(make_order, staff_user):
    order = make_order()

    summary = override_statuses([order], S.CANCELLED, user=staff_user, reason="x")

    assert [o.result for o in summary.outcomes] == [OverrideResult.PERMISSION]
    assert statuses(order) == [S.AWAITING_PAYMENT]


def test_unknown_ids_are_reported_not_found(make_order, supervisor):
    order = make_order()
    missing = order.pk + 1000

    summary = override_statuses([missing, order], S.CANCELLED, user=supervisor, reason="x")

    assert [(o.pk, o.result) for o in summary.not_found] == [(missing, OverrideResult.NOT_FOUND)]
    assert summary.not_found[0].refused
    assert [o.pk for o in summary.changed] == [order.pk]


def test_order_whose_status_moved_since_it_was_seen_is_left_alone(make_order, supervisor):
    moved, steady = make_order(), make_order()
    override_status(moved, S.AUTHORIZED, user=supervisor, reason="meanwhile")

    summary = override_statuses(
        [moved, steady],
        S.DECLINED,
        user=supervisor,
        reason="x",
        seen_statuses={moved.pk: S.AWAITING_PAYMENT, steady.pk: S.AWAITING_PAYMENT},
    )

    assert [(o.pk, o.result) for o in summary.refused] == [(moved.pk, OverrideResult.MOVED)]
    assert "is now Authorized, not Awaiting payment" in summary.refused[0].message
    assert statuses(moved, steady) == [S.AUTHORIZED, S.DECLINED]


def test_an_order_already_moved_to_the_target_counts_as_already_there(make_order, supervisor):
    order = make_order()
    override_status(order, S.DECLINED, user=supervisor, reason="meanwhile")

    summary = override_statuses(
        [order],
        S.DECLINED,
        user=supervisor,
        reason="x",
        seen_statuses={order.pk: S.AWAITING_PAYMENT},
    )

    assert [o.result for o in summary.outcomes] == [OverrideResult.ALREADY]


def test_one_failure_does_not_undo_the_others(make_order, supervisor, monkeypatch):
    first, broken, last = make_order(), make_order(), make_order()
    real = orders.services.override_status

    def flaky(order, *args, **kwargs):
        if order.pk == broken.pk:
            raise RuntimeError("disk on fire")
        return real(order, *args, **kwargs)

    monkeypatch.setattr(orders.services, "override_status", flaky)

    summary = override_statuses([first, broken, last], S.CANCELLED, user=supervisor, reason="x")

    assert [(o.pk, o.result) for o in summary.failed] == [(broken.pk, OverrideResult.FAILED)]
    assert "disk on fire" not in summary.failed[0].message
    assert statuses(first, broken, last) == [S.CANCELLED, S.AWAITING_PAYMENT, S.CANCELLED]


@pytest.mark.parametrize(
    ("new_status", "reason", "ids", "message"),
    [
        ("lost", "x", None, "is not a payment status"),
        (S.CANCELLED, "   ", None, "A reason is required"),
        (S.CANCELLED, "x", ["12"], "is not an order id"),
        (S.CANCELLED, "x", [True], "is not an order id"),
    ],
)
def test_bad_input_is_refused_before_anything_changes(
    make_order, supervisor, new_status, reason, ids, message
):
    order = make_order()

    with pytest.raises(InvalidOrder, match=message):
        override_statuses([order, *(ids or [])], new_status, user=supervisor, reason=reason)

    assert statuses(order) == [S.AWAITING_PAYMENT]


def test_system_channel_without_user(make_order):
    order = make_order()

    summary = override_statuses([order], S.CANCELLED, user=None, reason="nightly clean-up")

    record = order.history.first()
    assert [o.result for o in summary.outcomes] == [OverrideResult.CHANGED]
    assert (record.history_user, record.channel) == (None, Channel.SYSTEM)


def test_id_beyond_the_column_range_is_not_found_not_a_crash(make_order, supervisor):
    order = make_order()
    huge = 2**70

    summary = override_statuses([order, huge], S.CANCELLED, user=supervisor, reason="x")

    assert [(o.pk, o.result) for o in summary.outcomes] == [
        (order.pk, OverrideResult.CHANGED),
        (huge, OverrideResult.NOT_FOUND),
    ]
