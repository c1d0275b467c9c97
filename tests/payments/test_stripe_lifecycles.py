"""
Section 5a: whole Stripe payment lifecycles, played from Stripe's own objects.

Each lifecycle is the events Stripe sends for one payment story, built from
Stripe's published example objects (``stripe_objects``), signed with the
official library and posted through the callback view. Stripe delivers at
least once and in no promised order, so each lifecycle is played in
Stripe's order, in every other order of its events (a seeded sample when
there are too many orders), and then delivered again. Every order must end
the same: the status, the ledger, the attention flag, and a 200 answer to
every delivery.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from math import factorial

import pytest
from django.urls import reverse

from orders.models import Order
from orders.models import PaymentStatus as S
from orders.services import place_order
from payments.gateways import PaymentResult
from payments.models import (
    EventOutcome,
    GatewayEvent,
    PaymentMethod,
    PaymentTransaction,
    TransactionKind,
)
from tests.factories import PaymentMethodFactory, next_number
from tests.payments import stripe_objects as stripe
from tests.payments.stripe_objects import CURRENT, OLDER, stripe_id

WEBHOOK_SECRET = "whsec_test_lifecycles_0c1d2e3f"

MAX_ORDERS = 24
"""Every order of a lifecycle's events is played up to this many (4 events)."""
SAMPLE_SIZE = 12
"""Beyond that, Stripe's order and a seeded sample of others, this many in all."""
SEED = 0x5A

ANSWERS = frozenset({"applied", "duplicate", "stale", "ignored"})
"""What a delivery may be answered in these lifecycles (never a conflict, never an error)."""

MONEY_KINDS = (
    TransactionKind.CAPTURE,
    TransactionKind.REFUND,
    TransactionKind.REFUND_REVERSAL,
    TransactionKind.DISPUTE,
    TransactionKind.DISPUTE_REVERSAL,
)

HUNDRED = Decimal("100.00")
UNITS = 10000
"""100.00 USD in Stripe's minor units."""

Rows = dict[str, list[tuple[str, Decimal]]]


def money_rows(**rows: list[tuple[str, Decimal]]) -> Rows:
    """The ledger rows expected of each money-moving kind (none unless given)."""
    return {kind: rows.get(str(kind), []) for kind in MONEY_KINDS} | rows


@dataclass
class Play:
    """One lifecycle set up: its order (None: not this store's), its events, what must come."""

    order: Order | None
    events: dict[str, bytes]
    status: str | None
    rows: Rows = field(default_factory=money_rows)
    """Ledger rows (reference, amount) of each kind named, exactly."""
    captured: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)
    flagged: bool = False
    flag_mentions: str = ""
    """A word one of the attention reasons must contain when the order is flagged."""
    answers: frozenset[str] = ANSWERS
    stale_after: dict[str, str] = field(default_factory=dict)
    """Step -> a step that, delivered before it, makes it stale."""


@dataclass(frozen=True)
class Lifecycle:
    """A payment story: its steps, and how to set up an order and its events for them."""

    steps: tuple[str, ...]
    """The event steps, in the order Stripe sends them."""
    build: Callable[[PaymentMethod, str, str], Play]
    shapes: tuple[str, ...] = (CURRENT, OLDER)
    variants: tuple[str, ...] = ("",)
    older_steps: tuple[str, ...] | None = None
    """The steps in the older API shape, when it sends more."""

    def steps_for(self, shape: str) -> tuple[str, ...]:
        return self.older_steps if shape == OLDER and self.older_steps else self.steps


# -- setting up ------------------------------------------------------------------------------


@pytest.fixture
def method(db) -> PaymentMethod:
    return PaymentMethodFactory(
        code="stripe", name="Stripe", gateway="stripe", webhook_secret=WEBHOOK_SECRET
    )


def place(
    method: PaymentMethod,
    *,
    reference: str = "",
    outcome: str = "pending",
    total: str = "100.00",
    currency: str = "USD",
) -> Order:
    initial = PaymentResult(outcome, reference=reference) if reference else None
    return place_order(
        number=next_number(),
        total=Decimal(total),
        currency=currency,
        payment_method=method,
        initial=initial,
    )


# -- the lifecycles ----------------------------------------------------------------------------


def declined_then_paid(method: PaymentMethod, shape: str, variant: str) -> Play:
    """The card is declined; the customer tries again and pays."""
    intent_id, failed_id, paid_id = stripe_id("pi"), stripe_id("ch"), stripe_id("ch")
    order = place(method, reference=intent_id)
    failed = stripe.charge(
        failed_id, intent_id=intent_id, amount=UNITS, status="failed", captured=False, shape=shape
    )
    paid = stripe.charge(paid_id, intent_id=intent_id, amount=UNITS, shape=shape)
    declined = stripe.payment_intent(
        intent_id,
        amount=UNITS,
        status="requires_payment_method",
        charges=(failed,),
        order_number=order.number,
        shape=shape,
    )
    succeeded = stripe.payment_intent(
        intent_id,
        amount=UNITS,
        amount_received=UNITS,
        status="succeeded",
        charges=(paid, failed),
        order_number=order.number,
        shape=shape,
    )
    return Play(
        order,
        {
            "declined": stripe.event("payment_intent.payment_failed", declined, shape=shape),
            "captured": stripe.event("payment_intent.succeeded", succeeded, shape=shape),
        },
        S.PAID,
        money_rows(capture=[(intent_id, HUNDRED)]),
        captured=HUNDRED,
        stale_after={"declined": "captured"},
    )


def authorized_then_cancelled(method: PaymentMethod, shape: str, variant: str) -> Play:
    """The money is held, then the PaymentIntent is cancelled: the hold is released."""
    intent_id, charge_id, release_id = stripe_id("pi"), stripe_id("ch"), stripe_id("re")
    order = place(method, reference=intent_id)
    held = stripe.charge(charge_id, intent_id=intent_id, amount=UNITS, captured=False, shape=shape)
    # Older API versions report the release as a refund of the uncaptured charge.
    release = stripe.refund(
        release_id, intent_id=intent_id, charge_id=charge_id, amount=UNITS, status="succeeded"
    )
    released = stripe.charge(
        charge_id,
        intent_id=intent_id,
        amount=UNITS,
        captured=False,
        amount_refunded=UNITS,
        refunds=(release,),
        shape=shape,
    )
    authorized = stripe.payment_intent(
        intent_id,
        amount=UNITS,
        amount_capturable=UNITS,
        status="requires_capture",
        capture_method="manual",
        charges=(held,),
        order_number=order.number,
        shape=shape,
    )
    cancelled = stripe.payment_intent(
        intent_id,
        amount=UNITS,
        status="canceled",
        capture_method="manual",
        cancellation_reason="requested_by_customer",
        charges=(released,),
        order_number=order.number,
        shape=shape,
    )
    events = {
        "authorized": stripe.event(
            "payment_intent.amount_capturable_updated", authorized, shape=shape
        ),
        "cancelled": stripe.event("payment_intent.canceled", cancelled, shape=shape),
    }
    if shape == OLDER:
        events["charge_refunded"] = stripe.event("charge.refunded", released, shape=shape)
    return Play(
        order,
        events,
        S.CANCELLED,
        money_rows(void=[(intent_id, HUNDRED)]),
    )


def checkout_abandoned(method: PaymentMethod, shape: str, variant: str) -> Play:
    """The customer leaves before paying; the PaymentIntent is cancelled unauthorized."""
    intent_id = stripe_id("pi")
    order = place(method, reference=intent_id)
    created = stripe.payment_intent(
        intent_id,
        amount=UNITS,
        status="requires_payment_method",
        order_number=order.number,
        shape=shape,
    )
    abandoned = stripe.payment_intent(
        intent_id,
        amount=UNITS,
        status="canceled",
        cancellation_reason="abandoned",
        order_number=order.number,
        shape=shape,
    )
    return Play(
        order,
        {
            "created": stripe.event("payment_intent.created", created, shape=shape),
            "cancelled": stripe.event("payment_intent.canceled", abandoned, shape=shape),
        },
        S.CANCELLED,
        money_rows(void=[], authorization=[]),
    )


def authorized_then_captured(method: PaymentMethod, shape: str, variant: str) -> Play:
    """The hold, then its capture; Stripe may deliver the hold last."""
    intent_id, charge_id = stripe_id("pi"), stripe_id("ch")
    order = place(method, reference=intent_id)
    held = stripe.charge(charge_id, intent_id=intent_id, amount=UNITS, captured=False, shape=shape)
    taken = stripe.charge(charge_id, intent_id=intent_id, amount=UNITS, shape=shape)
    authorized = stripe.payment_intent(
        intent_id,
        amount=UNITS,
        amount_capturable=UNITS,
        status="requires_capture",
        capture_method="manual",
        charges=(held,),
        order_number=order.number,
        shape=shape,
    )
    succeeded = stripe.payment_intent(
        intent_id,
        amount=UNITS,
        amount_received=UNITS,
        status="succeeded",
        capture_method="manual",
        charges=(taken,),
        order_number=order.number,
        shape=shape,
    )
    return Play(
        order,
        {
            "authorized": stripe.event(
                "payment_intent.amount_capturable_updated", authorized, shape=shape
            ),
            "captured": stripe.event("payment_intent.succeeded", succeeded, shape=shape),
        },
        S.PAID,
        money_rows(capture=[(intent_id, HUNDRED)]),
        captured=HUNDRED,
        stale_after={"authorized": "captured"},
    )


def refund_that_fails(
    method: PaymentMethod, shape: str, failure_event: str, *, units: int, status: str
) -> Play:
    """A refund is reported, then fails: its money is the store's again."""
    intent_id, charge_id, refund_id = stripe_id("pi"), stripe_id("ch"), stripe_id("re")
    order = place(method, reference=intent_id, outcome="captured")
    made = stripe.refund(
        refund_id, intent_id=intent_id, charge_id=charge_id, amount=units, status=status
    )
    failed = stripe.refund(
        refund_id, intent_id=intent_id, charge_id=charge_id, amount=units, status="failed"
    )
    refunded_charge = stripe.charge(
        charge_id,
        intent_id=intent_id,
        amount=UNITS,
        amount_refunded=units,
        refunds=(made,),
        shape=shape,
    )
    amount = Decimal(units) / 100
    return Play(
        order,
        {
            "refund": stripe.event("refund.created", made, shape=shape),
            "charge_refunded": stripe.event("charge.refunded", refunded_charge, shape=shape),
            "refund_failed": stripe.event(failure_event, failed, shape=shape),
        },
        S.PAID,
        money_rows(
            capture=[(intent_id, HUNDRED)],
            refund=[(refund_id, amount)],
            refund_reversal=[(refund_id, amount)],
        ),
        captured=HUNDRED,
        refunded=Decimal(0),
    )


def full_refund_fails(method: PaymentMethod, shape: str, variant: str) -> Play:
    return refund_that_fails(method, shape, variant, units=UNITS, status="succeeded")


def pending_partial_refund_fails(method: PaymentMethod, shape: str, variant: str) -> Play:
    return refund_that_fails(method, shape, "refund.updated", units=3000, status="pending")


def _disputed(method: PaymentMethod) -> tuple[Order, str, str, str, dict, dict]:
    intent_id, charge_id, dispute_id = stripe_id("pi"), stripe_id("ch"), stripe_id("dp")
    order = place(method, reference=intent_id, outcome="captured")
    withdrawal = stripe.balance_transaction(
        stripe_id("txn"), source=dispute_id, amount=-UNITS, fee=1500, reporting_category="dispute"
    )
    reinstatement = stripe.balance_transaction(
        stripe_id("txn"),
        source=dispute_id,
        amount=UNITS,
        fee=0,
        reporting_category="dispute_reversal",
    )
    return order, intent_id, charge_id, dispute_id, withdrawal, reinstatement


def dispute_lost(method: PaymentMethod, shape: str, variant: str) -> Play:
    """A chargeback: the money is withdrawn and the dispute lost."""
    order, intent_id, charge_id, dispute_id, withdrawal, _reinstatement = _disputed(method)

    def at(status: str) -> dict:
        return stripe.dispute(
            dispute_id,
            charge_id=charge_id,
            intent_id=intent_id,
            amount=UNITS,
            status=status,
            balance_transactions=(withdrawal,),
        )

    return Play(
        order,
        {
            "opened": stripe.event("charge.dispute.created", at("needs_response")),
            "withdrawn": stripe.event("charge.dispute.funds_withdrawn", at("needs_response")),
            "lost": stripe.event("charge.dispute.closed", at("lost")),
        },
        S.PAID,
        money_rows(capture=[(intent_id, HUNDRED)], dispute=[(dispute_id, HUNDRED)]),
        captured=HUNDRED,
        flagged=True,
        flag_mentions="disput",
    )


def dispute_won(method: PaymentMethod, shape: str, variant: str) -> Play:
    """A chargeback: the money is withdrawn, the dispute won and the money reinstated."""
    order, intent_id, charge_id, dispute_id, withdrawal, reinstatement = _disputed(method)

    def at(status: str, *transactions: dict) -> dict:
        return stripe.dispute(
            dispute_id,
            charge_id=charge_id,
            intent_id=intent_id,
            amount=UNITS,
            status=status,
            balance_transactions=transactions,
        )

    return Play(
        order,
        {
            "opened": stripe.event("charge.dispute.created", at("needs_response", withdrawal)),
            "withdrawn": stripe.event(
                "charge.dispute.funds_withdrawn", at("needs_response", withdrawal)
            ),
            "reinstated": stripe.event(
                "charge.dispute.funds_reinstated", at("won", withdrawal, reinstatement)
            ),
            "won": stripe.event("charge.dispute.closed", at("won", withdrawal, reinstatement)),
        },
        S.PAID,
        money_rows(
            capture=[(intent_id, HUNDRED)],
            dispute=[(dispute_id, HUNDRED)],
            dispute_reversal=[(dispute_id, HUNDRED)],
        ),
        captured=HUNDRED,
    )


def dashboard_refund(method: PaymentMethod, shape: str, variant: str) -> Play:
    """
    A refund made in Stripe's dashboard: only its PaymentIntent and charge name the payment.

    ``variant`` says how the storefront named the payment: by passing the
    PaymentIntent at checkout, or only by the order number in its metadata.
    """
    intent_id, charge_id, refund_id = stripe_id("pi"), stripe_id("ch"), stripe_id("re")
    order = place(method, reference=intent_id if variant == "reference_at_checkout" else "")
    paid = stripe.charge(charge_id, intent_id=intent_id, amount=UNITS, shape=shape)
    succeeded = stripe.payment_intent(
        intent_id,
        amount=UNITS,
        amount_received=UNITS,
        status="succeeded",
        charges=(paid,),
        order_number=order.number,
        shape=shape,
    )
    made = stripe.refund(
        refund_id, intent_id=intent_id, charge_id=charge_id, amount=UNITS, status="succeeded"
    )
    refunded_charge = stripe.charge(
        charge_id,
        intent_id=intent_id,
        amount=UNITS,
        amount_refunded=UNITS,
        refunds=(made,),
        shape=shape,
    )
    return Play(
        order,
        {
            "captured": stripe.event("payment_intent.succeeded", succeeded, shape=shape),
            "refund": stripe.event("refund.created", made, shape=shape),
            "charge_refunded": stripe.event("charge.refunded", refunded_charge, shape=shape),
        },
        S.REFUNDED,
        money_rows(capture=[(intent_id, HUNDRED)], refund=[(refund_id, HUNDRED)]),
        captured=HUNDRED,
        refunded=HUNDRED,
    )


def another_integration(method: PaymentMethod, shape: str, variant: str) -> Play:
    """A payment made on the same Stripe account by another system: not this store's."""
    intent_id, charge_id = stripe_id("pi"), stripe_id("ch")
    refund_id, dispute_id = stripe_id("re"), stripe_id("dp")
    paid = stripe.charge(charge_id, intent_id=intent_id, amount=UNITS, shape=shape)
    succeeded = stripe.payment_intent(
        intent_id,
        amount=UNITS,
        amount_received=UNITS,
        status="succeeded",
        charges=(paid,),
        shape=shape,
    )
    made = stripe.refund(
        refund_id, intent_id=intent_id, charge_id=charge_id, amount=2500, status="succeeded"
    )
    opened = stripe.dispute(
        dispute_id,
        charge_id=charge_id,
        intent_id=intent_id,
        amount=UNITS,
        status="warning_needs_response",
    )
    return Play(
        None,
        {
            "captured": stripe.event("payment_intent.succeeded", succeeded, shape=shape),
            "refund": stripe.event("refund.created", made, shape=shape),
            "opened": stripe.event("charge.dispute.created", opened, shape=shape),
        },
        None,
        answers=frozenset({"ignored"}),
    )


def paid_in(currency: str, total: str, units: int) -> Callable[[PaymentMethod, str, str], Play]:
    """An order in a currency Stripe counts unlike ISO 4217, held then captured."""

    def build(method: PaymentMethod, shape: str, variant: str) -> Play:
        intent_id = stripe_id("pi")
        order = place(method, reference=intent_id, total=total, currency=currency)
        authorized = stripe.payment_intent(
            intent_id,
            amount=units,
            amount_capturable=units,
            currency=currency.lower(),
            status="requires_capture",
            capture_method="manual",
            order_number=order.number,
        )
        succeeded = stripe.payment_intent(
            intent_id,
            amount=units,
            amount_received=units,
            currency=currency.lower(),
            status="succeeded",
            capture_method="manual",
            order_number=order.number,
        )
        return Play(
            order,
            {
                "authorized": stripe.event("payment_intent.amount_capturable_updated", authorized),
                "captured": stripe.event("payment_intent.succeeded", succeeded),
            },
            S.PAID,
            money_rows(capture=[(intent_id, Decimal(total))]),
            captured=Decimal(total),
        )

    return build


LIFECYCLES: dict[str, Lifecycle] = {
    "declined_then_paid": Lifecycle(("declined", "captured"), declined_then_paid),
    "authorized_then_cancelled": Lifecycle(
        ("authorized", "cancelled"),
        authorized_then_cancelled,
        older_steps=("authorized", "cancelled", "charge_refunded"),
    ),
    "checkout_abandoned": Lifecycle(("created", "cancelled"), checkout_abandoned),
    "authorization_after_capture": Lifecycle(("authorized", "captured"), authorized_then_captured),
    "refund_fails": Lifecycle(
        ("refund", "charge_refunded", "refund_failed"),
        full_refund_fails,
        variants=("refund.failed", "refund.updated"),
    ),
    "pending_partial_refund_fails": Lifecycle(
        ("refund", "charge_refunded", "refund_failed"), pending_partial_refund_fails
    ),
    "dispute_lost": Lifecycle(("opened", "withdrawn", "lost"), dispute_lost, shapes=(CURRENT,)),
    "dispute_won": Lifecycle(
        ("opened", "withdrawn", "reinstated", "won"), dispute_won, shapes=(CURRENT,)
    ),
    "dashboard_refund": Lifecycle(
        ("captured", "refund", "charge_refunded"),
        dashboard_refund,
        variants=("reference_at_checkout", "order_number_only"),
    ),
    "another_integration": Lifecycle(("captured", "refund", "opened"), another_integration),
    "isk_5000": Lifecycle(
        ("authorized", "captured"), paid_in("ISK", "5000", 500000), shapes=(CURRENT,)
    ),
    "mga_50000": Lifecycle(
        ("authorized", "captured"), paid_in("MGA", "50000", 50000), shapes=(CURRENT,)
    ),
}


def delivery_orders(steps: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Stripe's order first, then every other order, or a seeded sample when there are many."""
    if factorial(len(steps)) <= MAX_ORDERS:
        return list(itertools.permutations(steps))
    others = [order for order in itertools.permutations(steps) if order != steps]
    return [steps, *random.Random(SEED).sample(others, SAMPLE_SIZE - 1)]


CASES = [
    pytest.param(
        name,
        shape,
        variant,
        order,
        id="-".join(filter(None, [name, shape, variant.replace(".", "_"), ">".join(order)])),
    )
    for name, lifecycle in LIFECYCLES.items()
    for shape in lifecycle.shapes
    for variant in lifecycle.variants
    for order in delivery_orders(lifecycle.steps_for(shape))
]


# -- delivering and checking -------------------------------------------------------------------


def deliver(client, method: PaymentMethod, body: bytes):
    return client.post(
        reverse("payments:callback", args=[method.code]),
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=stripe.signature(body, WEBHOOK_SECRET),
    )


def ledger(order: Order, kind: str) -> list[tuple[str, Decimal]]:
    rows = PaymentTransaction.objects.filter(order=order, kind=kind)
    return sorted((row.reference, row.amount) for row in rows)


def snapshot(play: Play) -> tuple:
    """Everything a redelivery must leave as it was."""
    events = tuple(
        GatewayEvent.objects.order_by("pk").values_list("event_id", "outcome", "order_id")
    )
    if play.order is None:
        return events, Order.objects.count()
    order = Order.objects.get(pk=play.order.pk)
    rows = tuple(
        PaymentTransaction.objects.filter(order=order)
        .order_by("pk")
        .values_list("kind", "reference", "amount")
    )
    return (
        events,
        order.status,
        order.captured_amount,
        order.refunded_amount,
        rows,
        order.needs_attention,
        tuple(order.attention_reasons),
    )


def assert_outcome(play: Play) -> None:
    if play.order is None:
        assert Order.objects.count() == 0
        stored = list(GatewayEvent.objects.values_list("event_type", "outcome", "order_id"))
        assert len(stored) == len(play.events)
        assert {(outcome, order) for _type, outcome, order in stored} == {
            (EventOutcome.IGNORED, None)
        }, stored
        return
    order = Order.objects.get(pk=play.order.pk)
    assert order.status == play.status
    for kind, expected in play.rows.items():
        assert ledger(order, kind) == sorted(expected), kind
    assert (order.captured_amount, order.refunded_amount) == (play.captured, play.refunded)
    reasons = order.attention_reasons
    assert order.needs_attention is play.flagged, reasons
    if play.flagged:
        assert any(play.flag_mentions in reason.lower() for reason in reasons), reasons
    else:
        assert reasons == []


@pytest.mark.django_db
@pytest.mark.parametrize(("lifecycle", "shape", "variant", "order"), CASES)
def test_lifecycle_ends_the_same_in_any_order_and_when_delivered_again(
    client, method, lifecycle, shape, variant, order
):
    play = LIFECYCLES[lifecycle].build(method, shape, variant)

    answers = [(step, deliver(client, method, play.events[step])) for step in order]

    for position, (step, response) in enumerate(answers):
        assert response.status_code == 200, (step, response.content)
        answer = response.json()["status"]
        assert answer in play.answers, (step, response.json())
        if play.stale_after.get(step) in order[:position]:
            assert answer == "stale", (step, response.json())
    assert_outcome(play)
    before = snapshot(play)

    again = [(step, deliver(client, method, play.events[step])) for step in order]

    for step, response in again:
        assert (response.status_code, response.json()) == (200, {"status": "duplicate"}), step
    assert snapshot(play) == before
