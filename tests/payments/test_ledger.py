"""Section 8: the ledger counts money once, and disagreement needs attention."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from orders.models import Order
from orders.models import PaymentStatus as S
from orders.services import override_status
from payments.exceptions import InvalidPaymentEvent
from payments.gateways import MoneyFact
from payments.inbox import acknowledge_events
from payments.models import (
    EventOutcome,
    GatewayEvent,
    LedgerIsAppendOnly,
    PaymentTransaction,
    TransactionKind,
)
from payments.services import apply_gateway_event
from tests.factories import event


def attention_numbers() -> set[str]:
    return set(Order.objects.needing_attention().values_list("number", flat=True))


@pytest.mark.django_db
def test_partial_captures_accumulate_to_paid(make_order):
    order = make_order(S.AUTHORIZED)

    statuses = []
    for amount in ["30.00", "30.00", "40.00"]:
        order = apply_gateway_event(order, event("captured", amount)).order
        statuses.append(order.status)

    assert statuses == [S.PARTIALLY_PAID, S.PARTIALLY_PAID, S.PAID]
    assert order.captured_amount == Decimal("100.00")
    assert not order.needs_attention


@pytest.mark.django_db
def test_refunds_up_to_the_refundable_balance(make_order):
    order = make_order(S.PAID)

    first = apply_gateway_event(order, event("refunded", "60.00"))
    second = apply_gateway_event(order, event("refunded", "40.01"))
    third = apply_gateway_event(order, event("refunded", "40.00"))

    assert first.order.status == S.PARTIALLY_PAID
    assert second.outcome == EventOutcome.IGNORED
    assert "refundable balance" in second.reason
    assert third.outcome == EventOutcome.APPLIED
    assert third.order.status == S.REFUNDED
    assert third.order.refunded_amount == Decimal("100.00")
    assert third.order.net_paid_amount == Decimal("0.00")
    # The refused refund never reached the ledger but the order is flagged.
    assert PaymentTransaction.objects.filter(order=order, kind=TransactionKind.REFUND).count() == 2
    assert third.order.needs_attention


@pytest.mark.django_db
def test_same_reference_twice_counts_once(make_order):
    order = make_order(S.AWAITING_PAYMENT)

    first = apply_gateway_event(order, event("captured", "40.00", reference="tx_9"))
    again = apply_gateway_event(order, event("captured", "40.00", reference="tx_9"))

    assert first.outcome == EventOutcome.APPLIED
    assert again.outcome == EventOutcome.DUPLICATE
    assert again.transaction == first.transaction
    assert again.order.captured_amount == Decimal("40.00")
    assert again.order.history.count() == 2  # placed, partially paid


@pytest.mark.django_db
def test_one_reference_may_serve_authorization_and_capture(make_order):
    order = make_order(S.AWAITING_PAYMENT)

    apply_gateway_event(order, MoneyFact("authorized", "pi_1"))
    result = apply_gateway_event(order, MoneyFact("captured", "pi_1", amount="100.00"))

    assert result.outcome == EventOutcome.APPLIED
    assert result.order.status == S.PAID


@pytest.mark.django_db
def test_database_refuses_a_second_row_for_the_same_reference(make_order):
    order = make_order(S.PAID)
    row = PaymentTransaction.objects.get(order=order, kind=TransactionKind.CAPTURE)

    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentTransaction.objects.create(
            order=order,
            payment_method=order.payment_method,
            kind=TransactionKind.CAPTURE,
            amount=Decimal("1.00"),
            currency="USD",
            reference=row.reference,
        )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "amount"),
    [
        (TransactionKind.CAPTURE, Decimal("-1.00")),
        (TransactionKind.REFUND, Decimal("0.00")),
        (TransactionKind.VOID, Decimal("-0.01")),
    ],
)
def test_database_refuses_negative_or_empty_money(make_order, kind, amount):
    order = make_order(S.AWAITING_PAYMENT)

    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentTransaction.objects.create(
            order=order,
            payment_method=order.payment_method,
            kind=kind,
            amount=amount,
            currency="USD",
            reference="r1",
        )


@pytest.mark.django_db
def test_ledger_rows_cannot_be_changed_or_deleted(make_order):
    order = make_order(S.PAID)
    row = PaymentTransaction.objects.get(order=order)

    row.amount = Decimal("1.00")
    with pytest.raises(LedgerIsAppendOnly):
        row.save()
    with pytest.raises(LedgerIsAppendOnly):
        row.delete()
    assert PaymentTransaction.objects.get(pk=row.pk).amount == Decimal("100.00")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (MoneyFact("captured", "", amount="1.00"), "reference"),
        (MoneyFact("captured", "r"), "needs an amount"),
        (MoneyFact("refunded", "r", amount="-1"), "greater than zero"),
        (MoneyFact("captured", "r", amount="1.005"), "more decimals than USD allows"),
        (MoneyFact("captured", "r", amount="1.00", currency="EUR"), "not the order's currency"),
    ],
)
def test_malformed_fact_is_refused_and_nothing_written(make_order, bad, message):
    order = make_order(S.AWAITING_PAYMENT)

    with pytest.raises(InvalidPaymentEvent, match=message):
        apply_gateway_event(order, bad)

    assert not PaymentTransaction.objects.filter(order=order).exists()
    assert not GatewayEvent.objects.exists()


@pytest.mark.django_db
def test_consistent_orders_do_not_need_attention(make_order):
    orders = [make_order(status) for status in S.values]

    assert attention_numbers() == set()
    assert not any(o.needs_attention for o in orders)


@pytest.mark.django_db
def test_paid_with_nothing_captured_needs_attention(make_order, offline_method, supervisor):
    order = make_order(S.AWAITING_PAYMENT, method=offline_method)

    order = override_status(order, S.PAID, user=supervisor, reason="cheque arrived")

    assert order.needs_attention
    assert order.attention_reasons == [
        "Marked Paid, but the money kept (0.00 USD) does not cover the total (100.00 USD)."
    ]
    assert attention_numbers() == {order.number}


@pytest.mark.django_db
def test_cancelled_with_money_captured_needs_attention(make_order, supervisor):
    order = make_order(S.PAID)

    order = override_status(order, S.CANCELLED, user=supervisor, reason="x", allow_discouraged=True)

    assert any("captured and kept" in r for r in order.attention_reasons)
    assert attention_numbers() == {order.number}


@pytest.mark.django_db
def test_refunded_with_money_kept_needs_attention(make_order, supervisor):
    order = make_order(S.PARTIALLY_PAID)

    order = override_status(order, S.REFUNDED, user=supervisor, reason="x")

    assert order.attention_reasons == ["Marked Refunded, but 50.00 USD is still kept."]


@pytest.mark.django_db
def test_refunded_with_nothing_captured_needs_attention(make_order, supervisor):
    order = make_order(S.AWAITING_PAYMENT)

    order = override_status(order, S.REFUNDED, user=supervisor, reason="x", allow_discouraged=True)

    assert order.attention_reasons == ["Marked Refunded, but no money was ever captured."]


@pytest.mark.django_db
def test_partially_paid_without_money_needs_attention(make_order, supervisor):
    order = make_order(S.AWAITING_PAYMENT)

    order = override_status(order, S.PARTIALLY_PAID, user=supervisor, reason="x")

    assert order.needs_attention


@pytest.mark.django_db
def test_cancelled_with_open_authorization_needs_attention(make_order, supervisor):
    order = make_order(S.AUTHORIZED)

    order = override_status(order, S.CANCELLED, user=supervisor, reason="x")

    assert order.attention_reasons == [
        "Cancelled, but the gateway's authorization was never voided."
    ]


@pytest.mark.django_db
def test_overpayment_needs_attention(make_order):
    order = make_order(S.PAID)

    result = apply_gateway_event(order, event("captured", "5.00"))

    assert result.outcome == EventOutcome.IGNORED
    reasons = result.order.attention_reasons
    assert any("more than the order total" in r for r in reasons)


@pytest.mark.django_db
def test_acknowledging_an_ignored_event_clears_attention(make_order):
    order = make_order(S.AUTHORIZED)
    apply_gateway_event(order, event("authorized"))  # a second hold: not allowed
    assert order.needs_attention

    acknowledge_events(GatewayEvent.objects.filter(order=order), user=None)

    assert not order.needs_attention
    assert attention_numbers() == set()


@pytest.mark.django_db
def test_sql_filter_and_property_agree(make_order, supervisor):
    for status in S.values:
        make_order(status)
    for old, new in [(S.PAID, S.CANCELLED), (S.AUTHORIZED, S.PAID), (S.DECLINED, S.REFUNDED)]:
        override_status(make_order(old), new, user=supervisor, reason="x", allow_discouraged=True)

    flagged = {o.number for o in Order.objects.all() if o.needs_attention}

    assert flagged == attention_numbers()
    assert len(flagged) == 3
    assert set(Order.objects.not_needing_attention().values_list("number", flat=True)) == (
        set(Order.objects.values_list("number", flat=True)) - flagged
    )


@pytest.mark.django_db
def test_a_refund_reported_twice_before_its_capture_is_recorded_once(make_order):
    order = make_order(S.AWAITING_PAYMENT)
    early = event("refunded", "30.00", reference="re_1")
    apply_gateway_event(order, early)
    apply_gateway_event(order, early)  # reported again, still waiting
    apply_gateway_event(order, event("refunded", "80.00", reference="re_2"))

    order = apply_gateway_event(order, event("captured", "40.00")).order

    assert order.refunded_amount == Decimal("30.00")
    assert order.status == S.PARTIALLY_PAID
    refunds = GatewayEvent.objects.filter(order=order, kind="refunded")
    assert sorted(refunds.values_list("reference", "outcome", "deferred")) == [
        ("re_1", "applied", False),
        ("re_1", "duplicate", False),
        ("re_2", "ignored", True),  # 80.00 is more than the 10.00 left: still waiting
    ]


def test_every_fact_kind_fits_the_column_that_stores_it():
    # SQLite never enforces a varchar's length; PostgreSQL refuses the row.
    from payments.gateways.base import FactKind

    column = GatewayEvent._meta.get_field("kind").max_length
    assert max(len(kind.value) for kind in FactKind) <= column
    assert (
        len("local.") + max(len(k.value) for k in FactKind)
        <= GatewayEvent._meta.get_field("event_type").max_length
    )


# The race the ledger's unique constraint settles: two orders, each under its
# own lock, report the same reference; the second looked before the first
# inserted. Simulated here by hiding the first row from that look.
@pytest.mark.parametrize(
    ("status", "fact"),
    [
        (S.AWAITING_PAYMENT, ("voided", "100.00")),
        (S.PAID, ("dispute_funds_withdrawn", "100.00")),
    ],
)
def test_a_reference_recorded_meanwhile_for_another_order_changes_nothing_here(
    make_order, monkeypatch, status, fact
):
    import payments.facts

    kind, amount = fact
    first, second = make_order(status), make_order(status)
    assert apply_gateway_event(first, event(kind, amount, reference="shared_1")).outcome == (
        EventOutcome.APPLIED
    )
    monkeypatch.setattr(payments.facts, "_existing", lambda *args: None)

    result = apply_gateway_event(second, event(kind, amount, reference="shared_1"))

    assert result.outcome == EventOutcome.CONFLICT
    assert first.number in result.reason
    second = Order.objects.get(pk=second.pk)
    assert (second.status, second.dispute_status, second.disputed_amount) == (
        status,
        "",
        Decimal("0.00"),
    )
    assert not second.transactions.filter(reference="shared_1").exists()
    assert second.needs_attention
