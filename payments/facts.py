"""
Applying one money fact to an order: the rules of sections 5 and 5a.

A fact (``payments.gateways.base.MoneyFact``) is what a gateway reported, by
callback, by its answer to a staff request, or on a replay. Applying it locks
the order, records its money in the ledger once, and runs the transition the
order's status allows; otherwise the fact is kept with the reason:

- ``duplicate``: the same money is already in the ledger;
- ``conflict``: the same reference with another amount (flags the order);
- ``stale``: older than what the order already knows (an authorization after
  its capture, a cancellation after a capture): changes nothing, needs nobody;
- ``ignored``: not allowed from the order's status (its money is still
  recorded and the order flagged), or waiting for the fact it depends on.

Gateways deliver out of order, so some facts wait for another: a refund for
the capture that makes the balance sufficient, a refund failure for its
refund, a reinstatement for its withdrawal. Each is applied as soon as what
it waits for is recorded, under the gateway's name, never under the name of
whoever triggered that.
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
from orderflow.compiled import CompiledQuery, mark_int
from orderflow.money import ZERO, InvalidAmount, format_money, parse_amount
from orders.attention import refresh_attention
from orders.models import DisputeStatus, Order, PaymentStatus
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
    FactKind.REFUND_FAILED: TransactionKind.REFUND_REVERSAL,
    # A dispute's money, when the fact carries any.
    FactKind.DISPUTE_OPENED: TransactionKind.DISPUTE,
    FactKind.DISPUTE_FUNDS_WITHDRAWN: TransactionKind.DISPUTE,
    FactKind.DISPUTE_FUNDS_REINSTATED: TransactionKind.DISPUTE_REVERSAL,
    FactKind.DISPUTE_WON: TransactionKind.DISPUTE_REVERSAL,
}

TRANSITION = {
    FactKind.AUTHORIZED: "authorize",
    FactKind.CAPTURED: "capture",
    FactKind.DECLINED: "decline",
    FactKind.VOIDED: "void",
    FactKind.REFUNDED: "refund",
}

DISPUTE_FACTS = frozenset(
    {
        FactKind.DISPUTE_OPENED,
        FactKind.DISPUTE_FUNDS_WITHDRAWN,
        FactKind.DISPUTE_FUNDS_REINSTATED,
        FactKind.DISPUTE_WON,
        FactKind.DISPUTE_LOST,
    }
)
DISPUTE_STATUS_AFTER = {
    FactKind.DISPUTE_OPENED: DisputeStatus.OPEN,
    FactKind.DISPUTE_FUNDS_WITHDRAWN: DisputeStatus.OPEN,
    FactKind.DISPUTE_WON: DisputeStatus.WON,
    FactKind.DISPUTE_LOST: DisputeStatus.LOST,
}
# Money whose amount is part of what it is: the same reference with another
# amount is a conflict, not a duplicate.
AMOUNT_DEFINES = frozenset(
    {
        TransactionKind.CAPTURE,
        TransactionKind.REFUND,
        TransactionKind.REFUND_REVERSAL,
        TransactionKind.DISPUTE,
        TransactionKind.DISPUTE_REVERSAL,
    }
)


@dataclass(frozen=True)
class ApplyResult:
    """What applying a money fact did."""

    outcome: str
    """An EventOutcome value: applied, duplicate, conflict, stale or ignored."""
    order: Order
    reason: str = ""
    transaction: PaymentTransaction | None = None
    deferred: bool = False
    """Waiting for another fact (a capture, a refund, a withdrawal) to be recorded."""


def _validated_amount(order: Order, fact: MoneyFact) -> Decimal | None:
    """Return the fact's amount in the order's currency; None when it moves no money."""
    if fact.currency and fact.currency.upper() != order.currency:
        raise InvalidPaymentEvent(
            _("Currency %(currency)s is not the order's currency (%(expected)s).")
            % {"currency": fact.currency, "expected": order.currency}
        )
    if fact.amount is None or (fact.amount == 0 and fact.kind not in AMOUNT_REQUIRED):
        if fact.kind in AMOUNT_REQUIRED:
            raise InvalidPaymentEvent(_("A %(kind)s event needs an amount.") % {"kind": fact.kind})
        # A hold and its release are for the order total unless the gateway says.
        if fact.kind in (FactKind.AUTHORIZED, FactKind.VOIDED):
            return order.total
        if fact.kind == FactKind.DECLINED:
            return ZERO
        return None
    try:
        return parse_amount(fact.amount, what=_("The amount"), currency=order.currency)
    except InvalidAmount as exc:
        raise InvalidPaymentEvent(str(exc)) from None


def _describe(fact: MoneyFact, amount: Decimal | None, currency: str) -> str:
    values = {"amount": format_money(amount or ZERO, currency), "reference": fact.reference}
    texts = {
        FactKind.AUTHORIZED: _("Payment authorized (ref. %(reference)s)."),
        FactKind.CAPTURED: _("Payment captured: %(amount)s (ref. %(reference)s)."),
        FactKind.DECLINED: _("Payment declined (ref. %(reference)s)."),
        FactKind.VOIDED: _("Payment cancelled by the gateway (ref. %(reference)s)."),
        FactKind.REFUNDED: _("Refund: %(amount)s (ref. %(reference)s)."),
        FactKind.REFUND_FAILED: _("Refund failed, its money came back (ref. %(reference)s)."),
        FactKind.DISPUTE_OPENED: _("Payment disputed by the customer (dispute %(reference)s)."),
        FactKind.DISPUTE_FUNDS_WITHDRAWN: _(
            "Disputed money withdrawn: %(amount)s (dispute %(reference)s)."
        ),
        FactKind.DISPUTE_FUNDS_REINSTATED: _(
            "Disputed money given back: %(amount)s (dispute %(reference)s)."
        ),
        FactKind.DISPUTE_WON: _("Dispute won (dispute %(reference)s)."),
        FactKind.DISPUTE_LOST: _("Dispute lost (dispute %(reference)s)."),
    }
    return texts[fact.kind] % values


def apply_fact(
    order: Order,
    fact: MoneyFact,
    *,
    gateway_event: GatewayEvent | None = None,
    user: Any = None,
    order_locked: bool = False,
) -> ApplyResult:
    """
    Apply one money fact to an order, at most once (see the module's rules).

    ``gateway_event`` is the stored inbox row behind the fact, updated with
    the outcome; without one, an ignored or conflicting fact is stored as a
    local gateway event so the order still shows up as needing attention.
    ``order_locked=True`` says the caller has just read ``order`` with its row
    lock, inside a transaction that any error raised here rolls back whole:
    the order is not read again and no savepoint is taken.
    Raise InvalidPaymentEvent for a malformed fact (no reference, bad amount,
    another currency).
    """
    reference = (fact.reference or "").strip()
    if not reference:
        raise InvalidPaymentEvent(_("The gateway's reference for this movement is required."))

    with transaction.atomic(savepoint=not order_locked):
        locked = order if order_locked else Order.objects.lock(order)
        amount = _validated_amount(locked, fact)
        description = _describe(fact, amount, locked.currency)
        outer_reason = current_audit().reason
        reason = f"{outer_reason} — {description}" if outer_reason else description
        context = {"channel": channel_or(Channel.GATEWAY), "reason": reason}
        if user is not None:
            context["user"] = user

        with audit_context(**context):
            result = _apply_locked(locked, fact, reference, amount, gateway_event)
            _record_outcome(locked, fact.kind, amount, reference, result, gateway_event)
        # Money recorded now (applied, or kept while the status could not follow)
        # may be what other facts were waiting for.
        if result.transaction is not None and result.outcome in (
            EventOutcome.APPLIED,
            EventOutcome.IGNORED,
        ):
            if fact.kind == FactKind.REFUNDED:
                _settle_waiting_reports(locked, reference, recorded_by=gateway_event)
            # One look first: nearly always, nothing waits.
            if _ANYTHING_WAITING.rows(locked.pk):
                if fact.kind == FactKind.CAPTURED:
                    _apply_deferred_refunds(locked)
                _apply_waiting_for(locked, reference)
        locked.save_held_totals()
        # Status, ledger, dispute and this order's events may all have moved:
        # the stored attention commits with them.
        refresh_attention(locked)
    return result


def _record_outcome(
    order: Order,
    kind: str,
    amount: Decimal | None,
    reference: str,
    result: ApplyResult,
    gateway_event: GatewayEvent | None,
) -> None:
    """Write the outcome on the gateway event; keep a local fact needing staff as a local one."""
    if gateway_event is None:
        if result.outcome not in (EventOutcome.IGNORED, EventOutcome.CONFLICT):
            return
        gateway_event = GatewayEvent(
            payment_method_id=order.payment_method_id,
            event_id=f"local:{uuid4().hex}",
            event_type=f"local.{kind}",
            raw_body=json.dumps(
                {
                    "kind": str(kind),
                    "amount": str(amount) if amount is not None else None,
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
        order=order,
        outcome=EventOutcome.IGNORED,
        deferred=True,
        kind=FactKind.REFUNDED,
        reference=reference,
    )
    if recorded_by is not None:
        waiting = waiting.exclude(pk=recorded_by.pk)
    waiting.update(
        outcome=EventOutcome.DUPLICATE,
        deferred=False,
        detail=_("The same refund was recorded from another report."),
    )


# Asked after every recorded movement; almost always, nothing waits.
_ANYTHING_WAITING = CompiledQuery(
    "facts_waiting_for_an_order",
    GatewayEvent,
    lambda pk: _waiting_for(pk).order_by().values_list("pk")[:1],
    mark_int(0),
)


def _waiting_for(order_pk: int):
    # Acknowledged by staff means dealt with: it stays out of the ledger.
    return GatewayEvent.objects.filter(
        order_id=order_pk,
        outcome=EventOutcome.IGNORED,
        deferred=True,
        acknowledged_at__isnull=True,
    )


def _waiting(order: Order):
    return _waiting_for(order.pk).order_by("received_at", "id")


def _apply_waiting(order: Order, waiting: GatewayEvent, note: str) -> ApplyResult:
    """Apply a fact that waited, as the gateway reported it: the gateway's channel, no user."""
    fact = MoneyFact(waiting.kind, waiting.reference, waiting.amount)
    reason = f"{note} {_describe(fact, waiting.amount, order.currency)}"
    with audit_context(channel=Channel.GATEWAY, user=None, reason=reason):
        result = _apply_locked(order, fact, waiting.reference, waiting.amount, waiting)
        _record_outcome(order, waiting.kind, waiting.amount, waiting.reference, result, waiting)
    return result


def _apply_deferred_refunds(order: Order) -> None:
    """
    Record refunds that were reported before enough money was captured.

    Gateways do not promise to deliver events in order: a refund may arrive
    before the capture it refunds. Such a refund is kept as ignored and
    deferred; once a capture makes the balance sufficient, it is recorded,
    oldest first. The caller holds the order lock.
    """
    for waiting in _waiting(order).filter(kind=FactKind.REFUNDED):
        if waiting.amount > order.captured_amount - order.refunded_amount:
            continue
        note = _("Refund reported earlier (event %(id)s), recorded once the capture arrived.") % {
            "id": waiting.event_id
        }
        result = _apply_waiting(order, waiting, note)
        if result.transaction is not None:
            _settle_waiting_reports(order, waiting.reference, recorded_by=waiting)
            _apply_waiting_for(order, waiting.reference)


def _apply_waiting_for(order: Order, reference: str) -> None:
    """Apply the facts that waited for the money just recorded under ``reference``."""
    for waiting in _waiting(order).filter(reference=reference).exclude(kind=FactKind.REFUNDED):
        note = _("Reported earlier (event %(id)s), applied once what it depends on arrived.") % {
            "id": waiting.event_id
        }
        _apply_waiting(order, waiting, note)


def _record(
    order: Order,
    kind: str,
    amount: Decimal,
    reference: str,
    gateway_event: GatewayEvent | None,
) -> tuple[PaymentTransaction, bool]:
    """Write a ledger row unless its reference is there; its running total is held."""
    return record_transaction(
        order=order,
        kind=kind,
        amount=amount,
        reference=reference,
        gateway_event=gateway_event,
        # Written with the status by _follow, or by apply_fact at the end.
        save_totals=False,
    )


def _follow(order: Order, transition, **kwargs: Any) -> None:
    """Run a gateway transition and save the status (with the held totals) if it moved."""
    old = order.status
    transition(**kwargs)
    if order.status != old:
        order.save_status()


def _existing(order: Order, ledger_kind: str, reference: str) -> PaymentTransaction | None:
    return PaymentTransaction.objects.filter(
        payment_method_id=order.payment_method_id, kind=ledger_kind, reference=reference
    ).first()


def _belongs_elsewhere(order: Order, row: PaymentTransaction) -> ApplyResult:
    """A fact about money of another order: recorded nowhere, this order flagged."""
    return ApplyResult(
        EventOutcome.CONFLICT,
        order,
        _(
            "%(kind)s %(reference)s belongs to order %(other)s, not to this one; nothing was "
            "recorded: check the payment at the gateway."
        )
        % {"kind": row.get_kind_display(), "reference": row.reference, "other": row.order.number},
    )


def _recorded_meanwhile(
    order: Order, row: PaymentTransaction, amount: Decimal | None
) -> ApplyResult:
    """
    The ledger insert found the reference, written since this order looked
    for it: by a concurrent report for another order (its money, not this
    one's), or for this one.
    """
    if row.order_id != order.pk:
        return _belongs_elsewhere(order, row)
    return _already_recorded(order, row, amount)


def _already_recorded(order: Order, row: PaymentTransaction, amount: Decimal | None) -> ApplyResult:
    """The same reference again: a duplicate, or a conflict when the amount differs."""
    if row.kind in AMOUNT_DEFINES and amount is not None and row.amount != amount:
        return ApplyResult(
            EventOutcome.CONFLICT,
            order,
            _(
                "%(kind)s %(reference)s is already recorded with %(recorded)s; this report says "
                "%(amount)s. Nothing was recorded: check the payment at the gateway."
            )
            % {
                "kind": row.get_kind_display(),
                "reference": row.reference,
                "recorded": format_money(row.amount, order.currency),
                "amount": format_money(amount, order.currency),
            },
        )
    return ApplyResult(
        EventOutcome.DUPLICATE,
        order,
        _("Already recorded as ledger entry %(id)s on order %(number)s.")
        % {"id": row.pk, "number": row.order.number},
        row,
    )


def _cancelled_by_gateway(order: Order) -> bool:
    """Whether the gateway (not staff) cancelled this order's payment."""
    return (
        order.transactions.filter(kind=TransactionKind.VOID).exists()
        or order.gateway_events.filter(kind=FactKind.VOIDED, outcome=EventOutcome.APPLIED).exists()
    )


def _stale(order: Order, kind: str, reference: str) -> str:
    """Why a fact is older than what the order knows ('' when it is not)."""
    if kind not in (FactKind.AUTHORIZED, FactKind.VOIDED, FactKind.DECLINED):
        return ""
    if order.captured_amount > 0:
        return _(
            "Reported after the payment was captured: it changes nothing (a gateway may "
            "deliver its events in any order)."
        )
    if order.status == PaymentStatus.CANCELLED and (
        kind != FactKind.AUTHORIZED or _cancelled_by_gateway(order)
    ):
        return _("Reported after the gateway cancelled the payment: it changes nothing.")
    if (
        kind == FactKind.DECLINED
        and order.status == PaymentStatus.AUTHORIZED
        and not order.transactions.filter(
            kind=TransactionKind.AUTHORIZATION, reference=reference
        ).exists()
    ):
        return _(
            "A decline of another attempt, reported after this payment was authorized: it "
            "changes nothing (the authorization still holds the money)."
        )
    return ""


def _apply_locked(
    order: Order,
    fact: MoneyFact,
    reference: str,
    amount: Decimal | None,
    gateway_event: GatewayEvent | None,
) -> ApplyResult:
    if fact.kind in DISPUTE_FACTS:
        return _apply_dispute(order, fact, reference, amount, gateway_event)
    if fact.kind == FactKind.REFUND_FAILED:
        return _apply_refund_failure(order, reference, amount, gateway_event)

    ledger_kind = LEDGER_KIND[fact.kind]
    captured, refunded = order.captured_amount, order.refunded_amount
    # A capture, or a refund the balance covers, is never stale nor deferred:
    # the ledger insert itself finds a duplicate (below). Anything else looks
    # for one first, so a fact reported twice is a duplicate before it is
    # anything else.
    insert_finds_duplicate = fact.kind == FactKind.CAPTURED or (
        fact.kind == FactKind.REFUNDED and amount <= captured - refunded
    )
    if not insert_finds_duplicate:
        existing = _existing(order, ledger_kind, reference)
        if existing is not None:
            return _already_recorded(order, existing, amount)
    stale = _stale(order, fact.kind, reference)
    if stale:
        return ApplyResult(EventOutcome.STALE, order, stale)
    if fact.kind == FactKind.VOIDED and order.status in (
        PaymentStatus.AWAITING_PAYMENT,
        PaymentStatus.DECLINED,
    ):
        held = fact.amount is not None  # the gateway says what it released
        if not held and not order.transactions.filter(kind=TransactionKind.AUTHORIZATION).exists():
            # An abandoned checkout: nothing was held, so there is nothing to void.
            _follow(order, order.cancel_checkout)
            return ApplyResult(
                EventOutcome.APPLIED,
                order,
                _("The gateway cancelled a payment that was never authorized; no void recorded."),
            )
        # A hold released, reported before (or without) its authorization, or a
        # hold followed by a decline: the release is a void.
        row, created = _record(order, TransactionKind.VOID, amount, reference, gateway_event)
        if not created:  # recorded meanwhile, under another order's lock
            return _recorded_meanwhile(order, row, amount)
        _follow(order, order.cancel_checkout)
        return ApplyResult(EventOutcome.APPLIED, order, "", row)

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
    row, created = _record(order, ledger_kind, amount, reference, gateway_event)
    if not created:  # recorded meanwhile for another order with the same reference
        return _already_recorded(order, row, amount)
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

    if fact.kind == FactKind.CAPTURED:
        _follow(order, transition, net_paid=captured + amount - refunded)
    elif fact.kind == FactKind.REFUNDED:
        _follow(order, transition, net_paid=captured - refunded - amount)
    else:
        _follow(order, transition)
    return ApplyResult(EventOutcome.APPLIED, order, "", row)


def _apply_refund_failure(
    order: Order,
    reference: str,
    amount: Decimal | None,
    gateway_event: GatewayEvent | None,
) -> ApplyResult:
    """A refund failed: its money came back; the status follows the money kept."""
    reversal = _existing(order, TransactionKind.REFUND_REVERSAL, reference)
    if reversal is not None:
        return _already_recorded(order, reversal, amount)
    refund = _existing(order, TransactionKind.REFUND, reference)
    if refund is not None and refund.order_id != order.pk:
        return _belongs_elsewhere(order, refund)
    if refund is None:
        return ApplyResult(
            EventOutcome.IGNORED,
            order,
            _(
                "Refund %(reference)s failed, but that refund is not recorded yet; the "
                "failure is applied as soon as the refund arrives."
            )
            % {"reference": reference},
            deferred=True,
        )
    if amount is not None and amount != refund.amount:
        return _already_recorded(order, refund, amount)
    row, created = _record(
        order, TransactionKind.REFUND_REVERSAL, refund.amount, reference, gateway_event
    )
    if not created:
        return _already_recorded(order, row, refund.amount)
    if not can_proceed(order.reverse_refund):
        return ApplyResult(
            EventOutcome.IGNORED,
            order,
            _(
                "The failed refund's money is back in the ledger, but the status (%(status)s) "
                "was left as it is."
            )
            % {"status": PaymentStatus(order.status).label},
            row,
        )
    _follow(order, order.reverse_refund, net_paid=order.net_paid_amount)
    return ApplyResult(EventOutcome.APPLIED, order, "", row)


def _dispute_closed(order: Order, reference: str) -> bool:
    """Whether the gateway already reported this dispute (not another one) closed."""
    return order.gateway_events.filter(
        kind__in=[FactKind.DISPUTE_WON, FactKind.DISPUTE_LOST],
        reference=reference,
        outcome=EventOutcome.APPLIED,
    ).exists()


def _apply_dispute(
    order: Order,
    fact: MoneyFact,
    reference: str,
    amount: Decimal | None,
    gateway_event: GatewayEvent | None,
) -> ApplyResult:
    """
    A dispute's news: money withdrawn or given back, the dispute opened or closed.

    The payment status never changes; the ledger keeps the money and the
    order's dispute status flags it (open; lost until acknowledged).
    """
    row = None
    ledger_kind = LEDGER_KIND.get(fact.kind) if amount is not None else None
    if ledger_kind is not None:
        existing = _existing(order, ledger_kind, reference)
        if existing is not None and existing.order_id != order.pk:
            return _belongs_elsewhere(order, existing)
        if existing is not None:
            recorded = _already_recorded(order, existing, amount)
            if recorded.outcome == EventOutcome.CONFLICT or fact.kind not in DISPUTE_STATUS_AFTER:
                return recorded
        else:
            if ledger_kind == TransactionKind.DISPUTE_REVERSAL and amount > order.disputed_amount:
                return ApplyResult(
                    EventOutcome.IGNORED,
                    order,
                    _(
                        "%(amount)s given back for dispute %(reference)s, but that much was "
                        "not withdrawn yet; applied as soon as the withdrawal arrives."
                    )
                    % {"amount": format_money(amount, order.currency), "reference": reference},
                    deferred=True,
                )
            row, created = _record(order, ledger_kind, amount, reference, gateway_event)
            if not created:  # recorded meanwhile, under another order's lock
                return _recorded_meanwhile(order, row, amount)
    after = DISPUTE_STATUS_AFTER.get(fact.kind)
    closed = order.dispute_status in (DisputeStatus.WON, DisputeStatus.LOST)
    if after is not None and after != order.dispute_status:
        if after == DisputeStatus.OPEN and closed and _dispute_closed(order, reference):
            # This dispute's closing arrived first: its opening changes nothing now.
            return ApplyResult(
                EventOutcome.APPLIED if row else EventOutcome.STALE,
                order,
                _("The dispute is already closed."),
                row,
            )
        order.dispute_status = after
        order.save_fields("dispute_status", "updated_at")
        return ApplyResult(EventOutcome.APPLIED, order, "", row)
    if row is None:
        return ApplyResult(EventOutcome.DUPLICATE, order, _("Nothing new about this dispute."))
    return ApplyResult(EventOutcome.APPLIED, order, "", row)
