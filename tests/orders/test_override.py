"""Section 6: manual override, its policy, permission and audit."""

import pytest
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.test import override_settings

from orders.exceptions import AlreadyInStatus, DiscouragedTransition, InvalidOrder
from orders.models import PaymentStatus as S
from orders.policy import discouraged_reason
from orders.services import override_status
from payments.models import PaymentTransaction

DISCOURAGED = {
    (S.PAID, S.CANCELLED),
    (S.AUTHORIZED, S.REFUNDED),
    (S.AWAITING_PAYMENT, S.REFUNDED),
}
PAIRS = [(old, new) for old in S.values for new in S.values if old != new]


@pytest.mark.django_db
@pytest.mark.parametrize(("old", "new"), PAIRS)
def test_override_reaches_any_status_from_any_other(make_order, supervisor, old, new):
    order = make_order(old)
    ledger = list(PaymentTransaction.objects.filter(order=order).values_list("pk", "amount"))

    changed = override_status(
        order, new, user=supervisor, reason="fixing by hand", allow_discouraged=True
    )

    changed.refresh_from_db()
    assert changed.status == new
    record = changed.history.first()
    assert record.status == new
    assert record.history_user == supervisor
    assert "fixing by hand" in record.history_change_reason
    # An override never rewrites the ledger.
    after = list(PaymentTransaction.objects.filter(order=order).values_list("pk", "amount"))
    assert after == ledger


@pytest.mark.parametrize(("old", "new"), PAIRS)
def test_discouraged_list_is_exactly_the_three_pairs(old, new):
    assert (discouraged_reason(old, new) is not None) == ((old, new) in DISCOURAGED)


@pytest.mark.django_db
@pytest.mark.parametrize(("old", "new"), sorted(DISCOURAGED))
def test_discouraged_change_is_refused_without_consent(make_order, supervisor, old, new):
    order = make_order(old)

    with pytest.raises(DiscouragedTransition) as info:
        override_status(order, new, user=supervisor, reason="oops")

    assert info.value.reason == discouraged_reason(old, new)
    order.refresh_from_db()
    assert order.status == old


@pytest.mark.django_db
@pytest.mark.parametrize(("old", "new"), sorted(DISCOURAGED))
def test_discouraged_change_is_applied_with_consent_and_says_so(make_order, supervisor, old, new):
    order = make_order(old)

    order = override_status(order, new, user=supervisor, reason="agreed", allow_discouraged=True)

    assert order.status == new
    assert "discouraged change confirmed" in order.history.first().history_change_reason


@pytest.mark.django_db
@pytest.mark.parametrize(("old", "new"), sorted(DISCOURAGED))
def test_only_a_manager_may_confirm_a_discouraged_change(make_order, overriding_clerk, old, new):
    order = make_order(old)
    records = order.history.count()

    with pytest.raises(DiscouragedTransition):
        override_status(order, new, user=overriding_clerk, reason="oops")
    with pytest.raises(PermissionDenied, match="may not confirm a discouraged"):
        override_status(order, new, user=overriding_clerk, reason="sure", allow_discouraged=True)

    order.refresh_from_db()
    assert order.status == old
    assert order.history.count() == records


@pytest.mark.django_db
def test_a_clerk_may_still_make_changes_that_are_not_discouraged(make_order, overriding_clerk):
    order = make_order(S.AWAITING_PAYMENT)

    order = override_status(order, S.CANCELLED, user=overriding_clerk, reason="customer left")

    assert order.status == S.CANCELLED


@pytest.mark.django_db
def test_override_needs_the_permission(make_order, staff_user):
    order = make_order(S.AWAITING_PAYMENT)

    with pytest.raises(PermissionDenied):
        override_status(order, S.CANCELLED, user=staff_user, reason="no right")

    order.refresh_from_db()
    assert order.status == S.AWAITING_PAYMENT


@pytest.mark.django_db
def test_inactive_supervisor_cannot_override(make_order, supervisor):
    supervisor.is_active = False
    supervisor.save()
    order = make_order(S.AWAITING_PAYMENT)

    with pytest.raises(PermissionDenied):
        override_status(order, S.CANCELLED, user=supervisor, reason="left the company")


@pytest.mark.django_db
def test_system_channel_without_user_is_recorded_as_such(make_order):
    order = make_order(S.AWAITING_PAYMENT)

    order = override_status(order, S.CANCELLED, user=None, reason="nightly clean-up")

    record = order.history.first()
    assert record.history_user is None
    assert record.channel == "system"


@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["", "   ", None])
def test_override_needs_a_reason(make_order, supervisor, reason):
    order = make_order(S.AWAITING_PAYMENT)

    with pytest.raises(InvalidOrder, match="reason is required"):
        override_status(order, S.CANCELLED, user=supervisor, reason=reason)


@pytest.mark.django_db
def test_unknown_status_is_refused_by_name(make_order, supervisor):
    order = make_order(S.AWAITING_PAYMENT)

    with pytest.raises(InvalidOrder, match="'shipped' is not a payment status"):
        override_status(order, "shipped", user=supervisor, reason="x")


@pytest.mark.django_db
def test_override_to_the_same_status_changes_nothing(make_order, supervisor):
    order = make_order(S.PAID)
    before = order.history.count()

    with pytest.raises(AlreadyInStatus):
        override_status(order, S.PAID, user=supervisor, reason="again")

    assert order.history.count() == before


@pytest.mark.django_db
def test_status_cannot_be_assigned(make_order):
    order = make_order(S.AWAITING_PAYMENT)

    with pytest.raises(AttributeError, match="Direct status modification is not allowed"):
        order.status = S.PAID


@pytest.mark.django_db
def test_discouraged_list_extends_from_settings(make_order, supervisor):
    order = make_order(S.DECLINED)
    extra = {(S.DECLINED, S.PAID): "Ask the customer to pay again instead."}

    with override_settings(ORDERFLOW_DISCOURAGED_TRANSITIONS=extra):
        assert discouraged_reason(S.DECLINED, S.PAID) == "Ask the customer to pay again instead."
        assert discouraged_reason(S.PAID, S.CANCELLED) is not None
        with pytest.raises(DiscouragedTransition):
            override_status(order, S.PAID, user=supervisor, reason="x")


@pytest.mark.parametrize(
    "bad",
    [{("paid", "shipped"): "x"}, {"paid": "x"}, {(S.PAID, S.DECLINED): "  "}],
)
def test_bad_discouraged_setting_is_reported(bad):
    with (
        override_settings(ORDERFLOW_DISCOURAGED_TRANSITIONS=bad),
        pytest.raises(ImproperlyConfigured),
    ):
        discouraged_reason(S.PAID, S.CANCELLED)


def test_bad_discouraged_setting_fails_the_system_check():
    from orders.checks import check_discouraged_transitions

    with override_settings(ORDERFLOW_DISCOURAGED_TRANSITIONS={("paid", "x"): "y"}):
        assert [e.id for e in check_discouraged_transitions(None)] == ["orders.E001"]
    assert check_discouraged_transitions(None) == []


@pytest.mark.django_db
def test_failed_refresh_keeps_status_protected(make_order, monkeypatch):
    from django.db.models import Model

    order = make_order(S.AWAITING_PAYMENT)

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Model, "refresh_from_db", broken)
    with pytest.raises(RuntimeError):
        order.refresh_from_db()
    monkeypatch.undo()

    assert order._meta.get_field("status").protected
    with pytest.raises(AttributeError):
        order.status = S.PAID
