"""
The Stripe adapter reads Stripe's published objects as the right money facts.

These tests call the adapter alone (no database): each Stripe event, in the
current and the older API shape, must name the right fact, amount and
references, in Stripe's own minor units.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from payments.gateways.base import FactKind, MalformedCallback, MoneyFact
from payments.gateways.stripe import StripeGateway
from payments.gateways.stripe_facts import SUBSCRIBED_EVENTS
from tests.payments.stripe_objects import (
    CURRENT,
    OLDER,
    SHAPES,
    balance_transaction,
    charge,
    dispute,
    event,
    payment_intent,
    published,
    refund,
    stripe_id,
)

gateway = StripeGateway()


def parse(event_type: str, obj: dict, *, shape: str = CURRENT):
    return gateway.parse(event(event_type, obj, shape=shape))


def ids(*prefixes: str) -> list[str]:
    return [stripe_id(prefix) for prefix in prefixes]


# -- PaymentIntents --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_amount_on_hold_is_an_authorization_of_the_payment_intent(shape):
    intent_id, charge_id = ids("pi", "ch")
    held = charge(charge_id, intent_id=intent_id, amount=10000, captured=False, shape=shape)
    intent = payment_intent(
        intent_id,
        amount=10000,
        amount_capturable=10000,
        status="requires_capture",
        capture_method="manual",
        charges=(held,),
        order_number="A1001",
        shape=shape,
    )

    parsed = parse("payment_intent.amount_capturable_updated", intent, shape=shape)

    assert parsed.fact == MoneyFact(FactKind.AUTHORIZED, intent_id, Decimal("100.00"), "USD")
    assert (parsed.order_number, parsed.order_reference) == ("A1001", intent_id)
    assert parsed.references == (charge_id,)


def test_hold_that_went_down_to_nothing_is_no_fact():
    intent = payment_intent(stripe_id("pi"), amount=10000, status="requires_capture")

    parsed = parse("payment_intent.amount_capturable_updated", intent)

    assert parsed.fact is None
    assert "went down to nothing" in parsed.ignore_reason


@pytest.mark.parametrize("shape", SHAPES)
def test_succeeded_is_a_capture_named_by_the_payment_intent_not_the_charge(shape):
    intent_id, charge_id = ids("pi", "ch")
    taken = charge(charge_id, intent_id=intent_id, amount=10000, shape=shape)
    intent = payment_intent(
        intent_id,
        amount=10000,
        amount_received=10000,
        status="succeeded",
        charges=(taken,),
        shape=shape,
    )

    parsed = parse("payment_intent.succeeded", intent, shape=shape)

    assert parsed.fact == MoneyFact(FactKind.CAPTURED, intent_id, Decimal("100.00"), "USD")
    assert parsed.order_reference == intent_id
    assert parsed.references == (charge_id,)


@pytest.mark.parametrize("shape", SHAPES)
def test_payment_failed_is_a_decline(shape):
    intent_id, charge_id = ids("pi", "ch")
    failed = charge(
        charge_id, intent_id=intent_id, amount=10000, status="failed", captured=False, shape=shape
    )
    intent = payment_intent(
        intent_id,
        amount=10000,
        status="requires_payment_method",
        charges=(failed,),
        shape=shape,
    )

    parsed = parse("payment_intent.payment_failed", intent, shape=shape)

    assert parsed.fact == MoneyFact(FactKind.DECLINED, intent_id, None, "USD")


@pytest.mark.parametrize("shape", SHAPES)
def test_cancelling_an_authorized_payment_intent_voids_the_hold(shape):
    intent_id, charge_id, refund_id = ids("pi", "ch", "re")
    release = refund(
        refund_id, intent_id=intent_id, charge_id=charge_id, amount=10000, status="succeeded"
    )
    released = charge(
        charge_id,
        intent_id=intent_id,
        amount=10000,
        captured=False,
        amount_refunded=10000,
        refunds=(release,),
        shape=shape,
    )
    intent = payment_intent(
        intent_id,
        amount=10000,
        status="canceled",
        capture_method="manual",
        cancellation_reason="requested_by_customer",
        charges=(released,),
        shape=shape,
    )

    parsed = parse("payment_intent.canceled", intent, shape=shape)

    assert parsed.fact == MoneyFact(FactKind.VOIDED, intent_id, Decimal("100.00"), "USD")
    expected = (charge_id, refund_id) if shape == OLDER else (charge_id,)
    assert parsed.references == expected


@pytest.mark.parametrize("shape", SHAPES)
def test_checkout_abandoned_before_any_authorization_voids_no_amount(shape):
    intent_id = stripe_id("pi")
    intent = payment_intent(
        intent_id, amount=10000, status="canceled", cancellation_reason="abandoned", shape=shape
    )

    parsed = parse("payment_intent.canceled", intent, shape=shape)

    assert parsed.fact == MoneyFact(FactKind.VOIDED, intent_id, None, "USD")
    assert parsed.references == ()


@pytest.mark.parametrize(
    ("capture_method", "amount"), [("manual", Decimal("100.00")), ("automatic", None)]
)
def test_cancelled_payment_intent_naming_only_its_charge_held_money_if_captured_by_hand(
    capture_method, amount
):
    # A PaymentIntent captured automatically is captured the moment it
    # succeeds: cancelled with a charge, that charge was a failed attempt.
    intent_id, charge_id = ids("pi", "ch")
    latest = charge(charge_id, intent_id=intent_id, amount=10000, captured=False)
    intent = payment_intent(
        intent_id,
        amount=10000,
        status="canceled",
        capture_method=capture_method,
        charges=(latest,),
    )
    assert intent["latest_charge"] == charge_id

    parsed = parse("payment_intent.canceled", intent)

    assert parsed.fact == MoneyFact(FactKind.VOIDED, intent_id, amount, "USD")


def test_checkout_abandoned_after_a_failed_attempt_voids_no_amount():
    intent_id, charge_id = ids("pi", "ch")
    failed = charge(
        charge_id, intent_id=intent_id, amount=10000, status="failed", captured=False, shape=OLDER
    )
    intent = payment_intent(
        intent_id,
        amount=10000,
        status="canceled",
        cancellation_reason="abandoned",
        charges=(failed,),
        shape=OLDER,
    )

    parsed = parse("payment_intent.canceled", intent, shape=OLDER)

    assert parsed.fact == MoneyFact(FactKind.VOIDED, intent_id, None, "USD")


# -- refunds -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "status", "kind"),
    [
        ("refund.created", "succeeded", FactKind.REFUNDED),
        ("refund.created", "pending", FactKind.REFUNDED),
        ("refund.updated", "succeeded", FactKind.REFUNDED),
        ("charge.refund.updated", "succeeded", FactKind.REFUNDED),
        ("refund.failed", "failed", FactKind.REFUND_FAILED),
        ("refund.updated", "failed", FactKind.REFUND_FAILED),
        ("refund.updated", "canceled", FactKind.REFUND_FAILED),
        ("charge.refund.updated", "failed", FactKind.REFUND_FAILED),
    ],
)
def test_refund_is_named_by_its_own_id(event_type, status, kind):
    intent_id, charge_id, refund_id = ids("pi", "ch", "re")
    obj = refund(refund_id, intent_id=intent_id, charge_id=charge_id, amount=2500, status=status)

    parsed = parse(event_type, obj)

    assert parsed.fact == MoneyFact(kind, refund_id, Decimal("25.00"), "USD")
    assert parsed.order_reference == intent_id
    assert parsed.references == (charge_id, refund_id)
    assert parsed.order_number == ""  # a refund carries no PaymentIntent metadata


def test_refund_waiting_for_the_customer_moves_no_money():
    obj = refund(
        stripe_id("re"), intent_id=None, charge_id=None, amount=2500, status="requires_action"
    )

    parsed = parse("refund.updated", obj)

    assert parsed.fact is None
    assert "'requires_action'" in parsed.ignore_reason


def test_refund_published_by_stripe_names_its_charge():
    # Stripe's published example predates PaymentIntents on refunds.
    obj = published("refund")

    parsed = parse("refund.created", obj)

    assert parsed.fact == MoneyFact(FactKind.REFUNDED, obj["id"], Decimal("1.00"), "USD")
    assert parsed.order_reference == ""
    assert parsed.references == (obj["charge"], obj["id"])


def test_charge_refunded_without_its_refund_list_is_left_to_the_refund_events():
    intent_id, charge_id = ids("pi", "ch")
    obj = charge(charge_id, intent_id=intent_id, amount=10000, amount_refunded=10000)
    assert "refunds" not in obj

    parsed = parse("charge.refunded", obj)

    assert parsed.fact is None
    assert parsed.order_reference == intent_id
    assert parsed.references == (charge_id,)


def test_charge_refunded_in_the_older_shape_reports_its_newest_counted_refund():
    intent_id, charge_id, older_id, failed_id = ids("pi", "ch", "re", "re")
    earlier = refund(
        older_id, intent_id=intent_id, charge_id=charge_id, amount=3000, status="succeeded"
    )
    failed = refund(
        failed_id, intent_id=intent_id, charge_id=charge_id, amount=500, status="failed"
    )
    obj = charge(
        charge_id,
        intent_id=intent_id,
        amount=10000,
        amount_refunded=3000,
        refunds=(failed, earlier),
        shape=OLDER,
    )

    parsed = parse("charge.refunded", obj, shape=OLDER)

    assert parsed.fact == MoneyFact(FactKind.REFUNDED, older_id, Decimal("30.00"), "USD")
    assert parsed.references == (charge_id, failed_id, older_id)


def test_refund_listed_on_an_uncaptured_charge_is_the_release_of_a_hold_not_a_refund():
    intent_id, charge_id, refund_id = ids("pi", "ch", "re")
    release = refund(
        refund_id, intent_id=intent_id, charge_id=charge_id, amount=10000, status="succeeded"
    )
    obj = charge(
        charge_id,
        intent_id=intent_id,
        amount=10000,
        captured=False,
        amount_refunded=10000,
        refunds=(release,),
        shape=OLDER,
    )

    parsed = parse("charge.refunded", obj, shape=OLDER)

    assert parsed.fact is None
    assert "never captured" in parsed.ignore_reason


# -- disputes -------------------------------------------------------------------------------------


def _withdrawal(dispute_id: str, amount: int = 10000, currency: str = "usd") -> dict:
    return balance_transaction(
        stripe_id("txn"),
        source=dispute_id,
        amount=-amount,
        fee=1500,
        currency=currency,
        reporting_category="dispute",
    )


def _reinstatement(dispute_id: str, amount: int = 10000) -> dict:
    return balance_transaction(
        stripe_id("txn"),
        source=dispute_id,
        amount=amount,
        fee=0,
        reporting_category="dispute_reversal",
    )


def _dispute(status: str, *transactions: dict, amount: int = 10000) -> tuple[str, str, dict]:
    intent_id, charge_id, dispute_id = ids("pi", "ch", "dp")
    obj = dispute(
        dispute_id,
        charge_id=charge_id,
        intent_id=intent_id,
        amount=amount,
        status=status,
        balance_transactions=tuple(t(dispute_id) for t in transactions),
    )
    return intent_id, charge_id, obj


def test_dispute_opened_names_the_dispute_and_moves_no_money():
    intent_id, charge_id, obj = _dispute("needs_response", _withdrawal)

    parsed = parse("charge.dispute.created", obj)

    assert parsed.fact == MoneyFact(FactKind.DISPUTE_OPENED, obj["id"], None, "USD")
    assert parsed.order_reference == intent_id
    assert parsed.references == (charge_id, obj["id"])


def test_funds_withdrawn_are_the_withdrawal_without_the_fee():
    _intent, _charge, obj = _dispute("needs_response", lambda d: _withdrawal(d, 4000), amount=4000)

    parsed = parse("charge.dispute.funds_withdrawn", obj)

    assert parsed.fact == MoneyFact(
        FactKind.DISPUTE_FUNDS_WITHDRAWN, obj["id"], Decimal("40.00"), "USD"
    )


def test_withdrawal_in_the_settlement_currency_counts_as_the_disputed_amount():
    _intent, _charge, obj = _dispute(
        "needs_response", lambda d: _withdrawal(d, 9280, currency="eur")
    )

    parsed = parse("charge.dispute.funds_withdrawn", obj)

    assert parsed.fact.amount == Decimal("100.00")


def test_withdrawal_not_listed_yet_counts_as_the_disputed_amount():
    _intent, _charge, obj = _dispute("needs_response")

    parsed = parse("charge.dispute.funds_withdrawn", obj)

    assert parsed.fact.amount == Decimal("100.00")


def test_funds_reinstated_are_the_reinstatement():
    _intent, _charge, obj = _dispute("under_review", _withdrawal, _reinstatement)

    parsed = parse("charge.dispute.funds_reinstated", obj)

    assert parsed.fact == MoneyFact(
        FactKind.DISPUTE_FUNDS_REINSTATED, obj["id"], Decimal("100.00"), "USD"
    )


@pytest.mark.parametrize(
    ("status", "transactions", "kind", "amount"),
    [
        ("won", (_withdrawal, _reinstatement), FactKind.DISPUTE_WON, Decimal("100.00")),
        ("won", (), FactKind.DISPUTE_WON, None),
        ("warning_closed", (), FactKind.DISPUTE_WON, None),
        ("lost", (_withdrawal,), FactKind.DISPUTE_LOST, None),
    ],
)
def test_closed_dispute_is_won_or_lost(status, transactions, kind, amount):
    _intent, _charge, obj = _dispute(status, *transactions)

    parsed = parse("charge.dispute.closed", obj)

    assert parsed.fact == MoneyFact(kind, obj["id"], amount, "USD")


def test_dispute_published_by_stripe_is_found_by_its_charge():
    obj = published("dispute")

    parsed = parse("charge.dispute.created", obj)

    assert parsed.fact == MoneyFact(FactKind.DISPUTE_OPENED, obj["id"], None, "USD")
    assert parsed.order_reference == ""
    assert parsed.references == (obj["charge"], obj["id"])


def test_dispute_closed_in_another_state_is_no_fact():
    _intent, _charge, obj = _dispute("under_review")

    parsed = parse("charge.dispute.closed", obj)

    assert parsed.fact is None
    assert "'under_review'" in parsed.ignore_reason


# -- what is not about a payment ---------------------------------------------------------------


def test_unknown_event_type_is_no_fact():
    parsed = parse("payment_intent.created", published("payment_intent"))

    assert (parsed.event_type, parsed.fact, parsed.ignore_reason) == (
        "payment_intent.created",
        None,
        "",
    )


@pytest.mark.parametrize("event_type", ["refund.created", "charge.dispute.created"])
def test_event_about_another_kind_of_object_is_not_about_a_payment(event_type):
    parsed = parse(event_type, published("balance_transaction"))

    assert parsed.fact is None
    assert "not about a payment" in parsed.ignore_reason


def test_every_subscribed_event_type_is_read():
    assert set(SUBSCRIBED_EVENTS) == {
        "payment_intent.amount_capturable_updated",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "charge.refunded",
        "refund.created",
        "refund.updated",
        "refund.failed",
        "charge.refund.updated",
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
    }


# -- Stripe's minor units -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "minor_units", "amount"),
    [
        ("usd", 1234, Decimal("12.34")),
        ("jpy", 1500, Decimal("1500")),
        ("mga", 50000, Decimal("50000")),  # two decimals in ISO 4217, none at Stripe
        ("isk", 500000, Decimal("5000.00")),  # none in ISO 4217, two at Stripe
        ("kwd", 1230, Decimal("1.230")),
        ("bhd", 10, Decimal("0.010")),
    ],
)
def test_amounts_are_stripes_minor_units(currency, minor_units, amount):
    intent = payment_intent(
        stripe_id("pi"),
        amount=minor_units,
        amount_received=minor_units,
        currency=currency,
        status="succeeded",
    )

    parsed = parse("payment_intent.succeeded", intent)

    assert parsed.fact.amount == amount
    assert parsed.fact.currency == currency.upper()


@pytest.mark.parametrize("currency", ["kwd", "bhd", "jod", "omr", "tnd"])
def test_three_decimal_amount_that_is_not_a_multiple_of_10_is_refused(currency):
    obj = refund(
        stripe_id("re"),
        intent_id=None,
        charge_id=None,
        amount=1234,
        currency=currency,
        status="succeeded",
    )

    with pytest.raises(MalformedCallback) as refused:
        parse("refund.created", obj)

    assert str(refused.value) == (
        f"data.object.amount 1234 is not a multiple of 10: Stripe counts {currency.upper()} "
        "in thousandths that end in 0"
    )
