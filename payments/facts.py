"""
Applying one money fact to an order: the transition table of section 5.

A fact (``payments.gateways.base.MoneyFact``) is what a gateway reported, by
callback, by its answer to a staff request, or on a replay. Applying it locks
the order, records its money in the ledger once, runs the transition the
order's status allows, or keeps the fact as ignored with the reason. Refunds
reported before the capture they refund wait here until a capture makes the
balance sufficient.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import uuid4

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_fsm import can_proceed

from orderflow.audit import Channel, audit_context, channel_or, current_audit
from orderflow.money import ZERO, InvalidAmount, format_money, parse_amount
from orders.models import Order, PaymentStatus
from payments.exceptions import InvalidPaymentEvent
from payments.gateways.base import AMOUNT_REQUIRED, FactKind, MoneyFact
from payments.ledger import record_transaction
from payments.models import EventOutcome, GatewayEvent, PaymentTransaction, TransactionKind

LEDGER_KIND = {
    FactKind.AUTHORIZED: TransactionKind.AUTHORIZATION,
    FactKind.CAPTURED: TransactionKind.CAPTURE,
    FactKind.DECLINED: TransactionKind.DECLINE,
    FactKind.VOIDED: TransactionKind.VOID,
    FactKind.REFUNDED: TransactionKind.REFUND,
}

TRANSITION = {
    FactKind.AUTHORIZED: "authorize",
    FactKind.CAPTURED: "capture",
    FactKind.DECLINED: "decline",
    FactKind.VOIDED: "void",
    FactKind.REFUNDED: "refund",
}


@dataclass(frozen=True)
class ApplyResult:
    """What applying a money fact did."""

    outcome: str
    """``applied``, ``duplicate`` or ``ignored`` (an EventOutcome value)."""
    order: Order
    reason: str = ""
    transaction: PaymentTransaction | None = None
    deferred: bool = False
    """A refund beyond the balance, retried when a capture arrives."""


def _validated_amount(order: Order, fact: MoneyFact) -> Decimal:
    if fact.currency and fact.currency.upper() != order.currency:
        raise InvalidPaymentEvent(
            _("Currency %(currency)s is not the order's currency (%(expected)s).")
            % {"currency": fact.currency, "expected": order.currency}
        )
    if fact.amount is None:
        if fact.kind in AMOUNT_REQUIRED:
            raise InvalidPaymentEvent(_("A %(kind)s event needs an amount.") % {"kind": fact.kind})
        # A hold and its release are for the order total unless the gateway says.
        if fact.kind in (FactKind.AUTHORIZED, FactKind.VOIDED):
            return order.total
        return ZERO
    if fact.amount == 0 and fact.kind not in AMOUNT_REQUIRED:
        return ZERO
    try:
        return parse_amount(fact.amount, what=_("The amount"), currency=order.currency)
    except InvalidAmount as exc:
        raise InvalidPaymentEvent(str(exc)) from None


def _describe(fact: MoneyFact, amount: Decimal, currency: str) -> str:
    values = {"amount": format_money(amount, currency), "reference": fact.reference}
    texts = {
        FactKind.AUTHORIZED: _("Payment authorized (ref. %(reference)s)."),
        FactKind.CAPTURED: _("Payment captured: %(amount)s (ref. %(reference)s)."),
        FactKind.DECLINED: _("Payment declined (ref. %(reference)s)."),
        FactKind.VOIDED: _("Authorization voided (ref. %(reference)s)."),
        FactKind.REFUNDED: _("Refund: %(amount)s (ref. %(reference)s)."),
    }
    return texts[fact.kind] % values


def apply_fact(
    order: Order,
    fact: MoneyFact,
    *,
    gateway_event: GatewayEvent | None = None,
    user: Any = None,
) -> ApplyResult:
    """
    Apply one money fact to an order, at most once.

    - A reference already in the ledger for this method and kind: duplicate,
      no effect.
    - A refund beyond the refundable balance: ignored, kept out of the ledger.
    - Otherwise the money is recorded; the transition runs if the current
      status allows it, else the fact is ignored with the reason and the
      order needs attention.

    ``gateway_event`` is the stored inbox row behind the fact, updated with
    the outcome; without one, an ignored fact is stored as a local gateway
    event so the order still shows up as needing attention. Raise InvalidPaymentEvent for
    a malformed fact (no reference, bad amount, another currency).
    """
    reference = (fact.reference or "").strip()
    if not reference:
        raise InvalidPaymentEvent(_("The gateway's reference for this movement is required."))

    with transaction.atomic():
        locked = Order.objects.lock(order)
        amount = _validated_amount(locked, fact)
        ledger_kind = LEDGER_KIND[fact.kind]
        description = _describe(fact, amount, locked.currency)
        outer_reason = current_audit().reason
        reason = f"{outer_reason} — {description}" if outer_reason else description
        context = {"channel": channel_or(Channel.GATEWAY), "reason": reason}
        if user is not None:
            context["user"] = user

        with audit_context(**context):
            result = _apply_locked(locked, fact, reference, ledger_kind, amount, gateway_event)
            _record_outcome(locked, fact.kind, amount, reference, result, gateway_event)
        if fact.kind == FactKind.CAPTURED and result.outcome != EventOutcome.DUPLICATE:
            _apply_deferred_refunds(locked)
        if fact.kind == FactKind.REFUNDED and result.transaction is not None:
            _settle_waiting_reports(locked, reference, recorded_by=gateway_event)
    return result


def _record_outcome(
    order: Order,
    kind: str,
    amount: Decimal,
    reference: str,
    result: ApplyResult,
    gateway_event: GatewayEvent | None,
) -> None:
    """Write the outcome on the gateway event; keep an ignored local fact as a local one."""
    if gateway_event is None:
        if result.outcome != EventOutcome.IGNORED:
            return
        gateway_event = GatewayEvent(
            payment_method_id=order.payment_method_id,
            event_id=f"local:{uuid4().hex}",
            event_type=f"local.{kind}",
            raw_body=json.dumps(
                {
                    "kind": str(kind),
                    "amount": str(amount),
                    "currency": order.currency,
                    "reference": reference,
                }
            ),
            attempts=1,
        )
    gateway_event.outcome = result.outcome
    gateway_event.detail = result.reason
    gateway_event.order = order
    gateway_event.processed_at = timezone.now()
    gateway_event.kind = str(kind)
    gateway_event.amount = amount
    gateway_event.reference = reference
    gateway_event.deferred = result.deferred
    if gateway_event.pk is None:
        gateway_event.save()
    else:
        gateway_event.save(
            update_fields=[
                "outcome",
                "detail",
                "order",
                "processed_at",
                "kind",
                "amount",
                "reference",
                "deferred",
                "attempts",
            ]
        )


def _settle_waiting_reports(
    order: Order, reference: str, *, recorded_by: GatewayEvent | None
) -> None:
    """Other reports of a refund now in the ledger stop waiting: they are duplicates."""
    waiting = GatewayEvent.objects.filter(
        order=order, outcome=EventOutcome.IGNORED, deferred=True, reference=reference
    )
    if recorded_by is not None:
        waiting = waiting.exclude(pk=recorded_by.pk)
    waiting.update(
        outcome=EventOutcome.DUPLICATE,
        deferred=False,
        detail=_("The same refund was recorded from another report."),
    )


def _apply_deferred_refunds(order: Order) -> None:
    """
    Record refunds that were reported before enough money was captured.

    Gateways do not promise to deliver events in order: a refund may arrive
    before the capture it refunds. Such a refund is kept as ignored and
    deferred; once a capture makes the balance sufficient, it is recorded,
    oldest first. The caller holds the order lock.
    """
    pending = GatewayEvent.objects.filter(
        order=order, outcome=EventOutcome.IGNORED, deferred=True
    ).order_by("received_at", "id")
    for waiting in pending:
        if waiting.amount > order.captured_amount - order.refunded_amount:
            continue
        fact = MoneyFact(FactKind.REFUNDED, waiting.reference, waiting.amount)
        note = _("Refund reported earlier (event %(id)s), recorded once the capture arrived.") % {
            "id": waiting.event_id
        }
        with audit_context(reason=f"{note} {_describe(fact, waiting.amount, order.currency)}"):
            result = _apply_locked(
                order, fact, waiting.reference, TransactionKind.REFUND, waiting.amount, waiting
            )
            _record_outcome(
                order, FactKind.REFUNDED, waiting.amount, waiting.reference, result, waiting
            )
        if result.transaction is not None:
            _settle_waiting_reports(order, waiting.reference, recorded_by=waiting)


def _duplicate(order: Order, row: PaymentTransaction) -> ApplyResult:
    return ApplyResult(
        EventOutcome.DUPLICATE,
        order,
        _("Already recorded as ledger entry %(id)s on order %(number)s.")
        % {"id": row.pk, "number": row.order.number},
        row,
    )


def _apply_locked(
    order: Order,
    fact: MoneyFact,
    reference: str,
    ledger_kind: str,
    amount: Decimal,
    gateway_event: GatewayEvent | None,
) -> ApplyResult:
    existing = PaymentTransaction.objects.filter(
        payment_method_id=order.payment_method_id, kind=ledger_kind, reference=reference
    ).first()
    if existing is not None:
        return _duplicate(order, existing)

    captured, refunded = order.captured_amount, order.refunded_amount
    if fact.kind == FactKind.REFUNDED and amount > captured - refunded:
        return ApplyResult(
            EventOutcome.IGNORED,
            order,
            _(
                "Refund of %(amount)s is more than the refundable balance (%(balance)s); "
                "not recorded in the ledger. It will be recorded if a capture makes the "
                "balance sufficient."
            )
            % {
                "amount": format_money(amount, order.currency),
                "balance": format_money(captured - refunded, order.currency),
            },
            deferred=True,
        )

    transition = getattr(order, TRANSITION[fact.kind])
    allowed = can_proceed(transition)
    row, created = record_transaction(
        order=order,
        kind=ledger_kind,
        amount=amount,
        reference=reference,
        gateway_event=gateway_event,
        checked=True,
    )
    if not created:  # recorded meanwhile for another order with the same reference
        return _duplicate(order, row)
    if not allowed:
        return ApplyResult(
            EventOutcome.IGNORED,
            order,
            _(
                "A %(kind)s event is not allowed when the order is %(status)s; "
                "it was recorded in the ledger and the status left unchanged."
            )
            % {"kind": fact.kind, "status": PaymentStatus(order.status).label},
            row,
        )

    old = order.status
    if fact.kind == FactKind.CAPTURED:
        transition(net_paid=captured + amount - refunded)
    elif fact.kind == FactKind.REFUNDED:
        transition(net_paid=captured - refunded - amount)
    else:
        transition()
    if order.status != old:
        order.save_status()
    return ApplyResult(EventOutcome.APPLIED, order, "", row)
