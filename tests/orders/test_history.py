"""Section 7: one history record per status change, with who, why and channel."""

from decimal import Decimal

import pytest

from orderflow.audit import Channel, audit_context, current_audit
from orders.exceptions import AlreadyInStatus
from orders.models import PaymentStatus as S
from orders.services import override_status, place_order
from payments.services import apply_gateway_event
from tests.factories import event, next_number


def records(order):
    return list(order.history.order_by("history_date", "history_id"))


@pytest.mark.django_db
def test_each_change_leaves_one_record_with_user_reason_and_channel(online_method, supervisor):
    order = place_order(
        number=next_number(), total=Decimal("50"), currency="USD", payment_method=online_method
    )
    with audit_context(channel=Channel.GATEWAY, user=None):
        order = apply_gateway_event(order, event("authorized", reference="pi_1")).order
        order = apply_gateway_event(order, event("captured", "50.00", reference="tx_1")).order
    with audit_context(channel=Channel.ADMIN):
        order = override_status(order, S.REFUNDED, user=supervisor, reason="goodwill")

    rows = [(r.status, r.channel, r.history_user, r.history_change_reason) for r in records(order)]
    assert rows == [
        (S.AWAITING_PAYMENT, "storefront", None, "Order placed: Awaiting payment."),
        (S.AUTHORIZED, "gateway", None, "Payment authorized (ref. pi_1)."),
        (S.PAID, "gateway", None, "Payment captured: 50.00 USD (ref. tx_1)."),
        (S.REFUNDED, "admin", supervisor, "goodwill"),
    ]
    assert all(r.history_date for r in records(order))


@pytest.mark.django_db
def test_no_record_for_a_no_op(make_order, supervisor):
    order = make_order(S.PARTIALLY_PAID)
    before = order.history.count()

    with pytest.raises(AlreadyInStatus):
        override_status(order, S.PARTIALLY_PAID, user=supervisor, reason="same")
    # A duplicate report and a capture that leaves the status as it was.
    ref = order.transactions.get().reference
    apply_gateway_event(order, event("captured", "50.00", reference=ref))
    apply_gateway_event(order, event("captured", "10.00"))

    assert order.history.count() == before


@pytest.mark.django_db
def test_user_and_reason_do_not_leak_into_the_next_save(make_order, supervisor):
    order = make_order(S.AUTHORIZED)
    with audit_context(channel=Channel.ADMIN):
        override_status(order, S.AWAITING_PAYMENT, user=supervisor, reason="staff reason")

    order = apply_gateway_event(order, event("authorized", reference="pi_2")).order

    latest = order.history.first()
    assert latest.history_user is None
    assert latest.channel == "gateway"
    assert "staff reason" not in latest.history_change_reason
    assert current_audit().user is None and current_audit().channel is None


@pytest.mark.django_db
def test_command_channel_and_outer_reason_are_kept(make_order):
    order = make_order(S.PAID)

    with audit_context(channel=Channel.COMMAND, reason="refund batch 12"):
        order = apply_gateway_event(order, event("refunded", "100.00", reference="re_1")).order

    latest = order.history.first()
    assert latest.channel == "command"
    assert latest.history_change_reason == ("refund batch 12 — Refund: 100.00 USD (ref. re_1).")


@pytest.mark.django_db
def test_long_reason_is_kept_whole(make_order, supervisor):
    order = make_order(S.AWAITING_PAYMENT)
    reason = "The customer paid at the counter. " * 20

    order = override_status(order, S.CANCELLED, user=supervisor, reason=reason)

    assert order.history.first().history_change_reason == reason.strip()


def test_unknown_channel_is_refused():
    with pytest.raises(ValueError), audit_context(channel="email"):
        pass


@pytest.mark.django_db
def test_history_never_stores_the_webhook_secret(online_method):
    online_method.name = "Renamed"
    online_method.save()

    record = online_method.history.first()
    assert not hasattr(record, "webhook_secret")
