"""The stored attention code follows the rules after every service call."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import DatabaseError
from django.utils import timezone

from orders.attention import attention_mismatches, refresh_attention
from orders.models import ATTENTION_RULES, Order
from orders.models import PaymentStatus as S
from orders.services import override_status, place_order
from payments.inbox import acknowledge_events, replay_gateway_event
from payments.models import EventOutcome, GatewayEvent
from payments.services import (
    apply_gateway_event,
    capture_payment,
    record_offline_payment,
    record_offline_refund,
    refund_payment,
    void_payment,
)
from tests.factories import event, next_number
from tests.payments.callbacks import body_for, post

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model, supervisor):
    """May override, confirm, move money through the gateway and record it offline."""
    supervisor.user_permissions.add(
        *Permission.objects.filter(
            codename__in=[
                "capture_payment",
                "void_payment",
                "refund_payment",
                "record_offline_payment",
            ]
        )
    )
    return django_user_model.objects.get(pk=supervisor.pk)


class Tracker:
    """Check after each step that stored and computed attention agree; note the codes seen."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, order: Order | None = None) -> str:
        assert [str(m) for m in attention_mismatches()] == []
        stored = set(
            Order.objects.exclude(attention_code="").values_list("attention_code", flat=True)
        )
        self.seen |= stored
        if order is None:
            return ""
        return Order.objects.get(pk=order.pk).attention_code


def override(order, status, user):
    return override_status(order, status, user=user, reason="test", allow_discouraged=True)


def test_stored_attention_equals_the_rules_after_every_service_call(
    client, make_order, offline_method, staff, monkeypatch
):
    check = Tracker()

    # Placement, gateway callbacks and staff requests that leave everything in order.
    order = make_order(S.AUTHORIZED)
    assert check(order) == ""
    assert capture_payment(order, amount="40.00", user=staff).outcome == "applied"
    assert check(order) == ""
    refund_payment(order, user=staff, reason="goodwill", amount="10.00")
    assert check(order) == ""
    voided = make_order(S.AUTHORIZED)
    void_payment(voided, user=staff)
    assert check(voided) == ""

    # An ignored event (a second hold), then acknowledged.
    held = make_order(S.AUTHORIZED)
    post(client, body_for(held.number, "payment.authorized", transaction="tx_second_hold"))
    assert check(held) == "ignored_event"
    acknowledge_events(GatewayEvent.objects.filter(order=held), user=staff)
    assert check(held) == ""

    # The same reference with another amount: a conflict, then acknowledged.
    conflicted = make_order(S.AUTHORIZED)
    post(client, body_for(conflicted.number, "payment.captured", amount="40.00", transaction="t7"))
    post(client, body_for(conflicted.number, "payment.captured", amount="90.00", transaction="t7"))
    assert check(conflicted) == "conflicting_event"
    acknowledge_events(GatewayEvent.objects.filter(order=conflicted), user=staff)
    assert check(conflicted) == ""

    # The same event id with another body: kept as a conflict (409), then acknowledged.
    redelivered = make_order(S.AUTHORIZED)
    first = body_for(redelivered.number, "payment.captured", amount="40.00", event_id="evt_r1")
    other = body_for(redelivered.number, "payment.captured", amount="90.00", event_id="evt_r1")
    post(client, first)
    assert post(client, other).status_code == 409
    assert check(redelivered) == "conflicting_event"
    acknowledge_events(GatewayEvent.objects.filter(order=redelivered), user=staff)
    assert check(redelivered) == ""

    # A dispute: open, lost, acknowledged.
    disputed = make_order(S.PAID)
    post(client, body_for(disputed.number, "payment.disputed", amount="60.00", transaction="dp_1"))
    assert check(disputed) == "dispute_open"
    post(client, body_for(disputed.number, "payment.dispute_lost", transaction="dp_1"))
    assert check(disputed) == "dispute_lost"
    acknowledge_events(GatewayEvent.objects.filter(order=disputed), user=staff)
    assert check(disputed) == ""

    # A processing crash leaves a failed event; its replay applies it.
    crashed = make_order(S.AUTHORIZED)
    real_save_status = Order.save_status

    def broken(self):
        raise DatabaseError("disk I/O error")

    monkeypatch.setattr(Order, "save_status", broken)
    body = body_for(crashed.number, "payment.captured", amount="100.00", transaction="tx_boom")
    assert post(client, body).status_code == 500
    assert check(crashed) == "unfinished_event"
    monkeypatch.setattr(Order, "save_status", real_save_status)
    replay_gateway_event(GatewayEvent.objects.get(outcome=EventOutcome.FAILED))
    assert check(crashed) == ""

    # Overrides that the ledger contradicts, one rule each.
    for old, new, code in [
        (S.AWAITING_PAYMENT, S.PAID, "paid_not_covered"),
        (S.PAID, S.CANCELLED, "money_kept_without_payment_status"),
        (S.AWAITING_PAYMENT, S.PARTIALLY_PAID, "partially_paid_mismatch"),
        (S.PAID, S.REFUNDED, "refunded_money_kept"),
        (S.DECLINED, S.REFUNDED, "refunded_nothing_captured"),
        (S.AWAITING_PAYMENT, S.AUTHORIZED, "authorized_without_authorization"),
        (S.AUTHORIZED, S.CANCELLED, "cancelled_authorization_open"),
    ]:
        flagged = override(make_order(old), new, staff)
        assert check(flagged) == code, (old, new)
    # An override back to what the ledger says clears it.
    back = override(make_order(S.PAID), S.CANCELLED, staff)
    override(back, S.PAID, staff)
    assert check(back) == ""

    # Money captured beyond the total: overpaid (the capture is kept, ignored).
    overpaid = make_order(S.PAID)
    apply_gateway_event(overpaid, event("captured", "5.00"))
    assert check(overpaid) in {"ignored_event", "overpaid"}
    acknowledge_events(GatewayEvent.objects.filter(order=overpaid), user=staff)
    assert check(overpaid) == "overpaid"

    # Offline: an order marked paid by hand, then its cheque recorded; a refund.
    cheque = place_order(
        number=next_number(), total="100.00", currency="USD", payment_method=offline_method
    )
    assert check(cheque) == ""
    override(cheque, S.PARTIALLY_PAID, staff)
    assert check(cheque) == "partially_paid_mismatch"
    record_offline_payment(cheque, amount="40.00", reference="CHQ-1", user=staff)
    assert check(cheque) == ""
    record_offline_payment(cheque, amount="60.00", reference="CHQ-2", user=staff)
    assert check(cheque) == ""
    record_offline_refund(cheque, amount="100.00", reference="CHQ-R1", user=staff, reason="back")
    assert check(cheque) == ""
    assert Order.objects.get(pk=cheque.pk).status == S.REFUNDED

    assert check.seen == {rule.code for rule in ATTENTION_RULES}


def test_needs_attention_filter_reads_the_stored_code(make_order, staff):
    fine = make_order(S.PAID)
    flagged = override(make_order(S.PAID), S.CANCELLED, staff)

    assert list(Order.objects.needing_attention()) == [Order.objects.get(pk=flagged.pk)]
    assert list(Order.objects.not_needing_attention()) == [Order.objects.get(pk=fine.pk)]
    # The property still evaluates the rules, for the order page's explanation.
    assert Order.objects.get(pk=flagged.pk).needs_attention
    assert "status is Cancelled" in Order.objects.get(pk=flagged.pk).attention_reasons[0]


def test_a_stuck_event_reaches_the_stored_code_through_the_check(make_order):
    order = make_order(S.AUTHORIZED)
    GatewayEvent.objects.create(
        payment_method=order.payment_method, event_id="evt_stuck", event_type="x", order=order
    )
    GatewayEvent.objects.filter(event_id="evt_stuck").update(
        received_at=timezone.now() - timedelta(minutes=6)
    )
    out = StringIO()

    with pytest.raises(CommandError):
        call_command("check_ledger_totals", stdout=out)
    assert f"{order.number}: stored attention (none), the rules say unfinished_event" in (
        out.getvalue()
    )

    call_command("check_ledger_totals", "--repair", stdout=StringIO())
    assert Order.objects.get(pk=order.pk).attention_code == "unfinished_event"
    call_command("check_ledger_totals", stdout=StringIO())  # agrees: no error


def test_check_reports_a_stored_code_written_around_the_services(make_order):
    order = make_order(S.PAID)
    Order.objects.filter(pk=order.pk).update(attention_code="overpaid")
    out = StringIO()

    with pytest.raises(CommandError, match="1 order"):
        call_command("check_ledger_totals", stdout=out)

    assert f"{order.number}: stored attention overpaid, the rules say (none)" in out.getvalue()
    assert refresh_attention(order) == ""
    assert list(attention_mismatches()) == []


def test_refresh_writes_only_when_the_code_changed(make_order, django_assert_num_queries):
    order = make_order(S.PAID)

    with django_assert_num_queries(1):
        assert refresh_attention(order) == ""
    assert order.captured_amount == Decimal("100.00")


def test_the_data_migration_stores_the_attention_of_existing_orders(make_order, staff):
    import importlib

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("orders.migrations.0006_stored_attention")
    flagged = override(make_order(S.PAID), S.CANCELLED, staff)
    fine = make_order(S.PAID)
    # As the column was added: blank for every order.
    Order.objects.update(attention_code="")

    # The step reads only the editor's connection (a real SQLite editor cannot
    # open inside the test's transaction).
    migration.store_attention(apps, SimpleNamespace(connection=connection))

    assert dict(Order.objects.values_list("number", "attention_code")) == {
        flagged.number: "money_kept_without_payment_status",
        fine.number: "",
    }
