"""The set-based path (orders.bulk) does what override_status does, order by order."""

import pytest

from orderflow.audit import Channel, audit_context
from orders.bulk import Selection, set_statuses
from orders.models import Order
from orders.models import PaymentStatus as S
from orders.services import OverrideResult, override_statuses

pytestmark = pytest.mark.django_db

# Compared through both paths: everything but what is unique to an order or a moment.
UNIQUE = {"id", "number", "placed_at", "updated_at", "history_id", "history_date"}
USERS = ["none", "supervisor", "overriding_clerk", "staff_user"]


def order_row(order: Order) -> dict:
    row = Order.objects.filter(pk=order.pk).values().get()
    return {name: value for name, value in row.items() if name not in UNIQUE}


def history_rows(order: Order, *, after: int = 0) -> list[dict]:
    """Return the order's history records after the first ``after`` ones."""
    rows = Order.history.filter(id=order.pk).order_by("history_date", "history_id").values()
    return [{k: v for k, v in row.items() if k not in UNIQUE} for row in rows][after:]


def bulk_result(summary) -> str:
    [(result, count)] = [(r, n) for r, n in summary.counts.items() if n]
    assert count == 1
    return result


@pytest.mark.parametrize("user_name", USERS)
@pytest.mark.parametrize("allow_discouraged", [False, True], ids=["plain", "allow-discouraged"])
@pytest.mark.parametrize("target", S.values)
def test_set_based_path_matches_override_status(
    request, make_order, target, allow_discouraged, user_name
):
    user = None if user_name == "none" else request.getfixturevalue(user_name)
    pairs = [(make_order(current), make_order(current)) for current in S.values]

    for single, bulk in pairs:
        before = single.history.count()
        assert bulk.history.count() == before
        with audit_context(channel=Channel.COMMAND, user=user):
            expected = override_statuses(
                [single.pk],
                target,
                user=user,
                reason=" reason ",
                allow_discouraged=allow_discouraged,
            ).outcomes[0]
            summary = set_statuses(
                Selection(numbers=[bulk.number]),
                target,
                user=user,
                reason=" reason ",
                allow_discouraged=allow_discouraged,
            )

        assert bulk_result(summary) == expected.result, single.status
        assert order_row(bulk) == order_row(single)
        # The records the override added (earlier ones differ by their gateway references).
        added = history_rows(bulk, after=before)
        assert added == history_rows(single, after=before)
        assert len(added) == (1 if expected.result == OverrideResult.CHANGED else 0)
        if expected.result == OverrideResult.CHANGED:
            assert added[0]["history_type"] == "~"
            assert Order.objects.get(pk=bulk.pk).updated_at > bulk.updated_at


def test_matrix_covers_every_result(make_order, overriding_clerk, staff_user):
    """The matrix above would prove little if one path always refused."""
    seen = set()
    for current, target, user, allow in [
        (S.AWAITING_PAYMENT, S.CANCELLED, None, False),
        (S.PAID, S.PAID, None, False),
        (S.PAID, S.CANCELLED, None, False),
        (S.PAID, S.CANCELLED, overriding_clerk, True),
        (S.AWAITING_PAYMENT, S.CANCELLED, staff_user, False),
    ]:
        order = make_order(current)
        summary = set_statuses(
            Selection(numbers=[order.number]),
            target,
            user=user,
            reason="x",
            allow_discouraged=allow,
        )
        seen.add(bulk_result(summary))
    assert seen == {
        OverrideResult.CHANGED,
        OverrideResult.ALREADY,
        OverrideResult.DISCOURAGED,
        OverrideResult.PERMISSION,
    }


def test_stored_attention_follows_the_change(make_order):
    paid = make_order(S.PAID)

    set_statuses(Selection(numbers=[paid.number]), S.REFUNDED, user=None, reason="x")

    # Refunded with the money still kept: the rules flag it, and the column says so.
    assert Order.objects.get(pk=paid.pk).attention_code == "refunded_money_kept"
