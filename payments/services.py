"""
Payment actions: the one place where money facts meet an order.

``apply_gateway_event`` applies a fact reported by a gateway (a callback, a
staff-initiated capture's answer, a replay) whatever the channel: it locks the
order, records the money once, runs the transition the current status
allows, or keeps the fact as ignored with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import uuid4

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_fsm import can_proceed

from orderflow.audit import Channel, audit_context, channel_or, current_audit
from orderflow.money import STORAGE_LIMIT, ZERO, format_money, money
from orders.exceptions import InvalidOrder
from orders.models import Order, PaymentStatus
from orders.services import lock_order, parse_money, save_status
from payments.exceptions import InvalidPaymentEvent, PaymentError
from payments.gateways.base import (
    AMOUNT_REQUIRED,
    EventKind,
    Gateway,
    OutboundRequest,
    PaymentEvent,
)
from payments.gateways.registry import get_gateway
from payments.models import EventOutcome, GatewayEvent, PaymentTransaction, TransactionKind

LEDGER_KIND = {
    EventKind.AUTHORIZED: TransactionKind.AUTHORIZATION,
    EventKind.CAPTURED: TransactionKind.CAPTURE,
    EventKind.DECLINED: TransactionKind.DECLINE,
    EventKind.VOIDED: TransactionKind.VOID,
    EventKind.REFUNDED: TransactionKind.REFUND,
}

RUNNING_TOTAL = {
    TransactionKind.CAPTURE: "captured_amount",
    TransactionKind.REFUND: "refunded_amount",
}

TRANSITION = {
    EventKind.AUTHORIZED: "authorize",
    EventKind.CAPTURED: "capture",
    EventKind.DECLINED: "decline",
    EventKind.VOIDED: "void",
    EventKind.REFUNDED: "refund",
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


def record_transaction(
    *,
    order: Order,
    kind: str,
    amount: Decimal,
    reference: str,
    event: GatewayEvent | None = None,
    checked: bool = False,
) -> tuple[PaymentTransaction, bool]:
    """
    Write one ledger row unless ``(method, kind, reference)`` is already there.

    Return the row and whether it was created. The caller holds the order
    lock; ``checked=True`` says it has just looked for the reference itself.
    The unique constraint stays the last word either way.
    """
    state = current_audit()
    if not checked:
        existing = PaymentTransaction.objects.filter(
            payment_method_id=order.payment_method_id, kind=kind, reference=reference
        ).first()
        if existing is not None:
            return existing, False
    row = PaymentTransaction(
        order=order,
        payment_method_id=order.payment_method_id,
        kind=kind,
        amount=amount,
        currency=order.currency,
        reference=reference,
        event=event,
        created_by=state.user,
        channel=state.channel or Channel.SYSTEM,
    )
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        # Another order's lock holder recorded the same reference first.
        existing = PaymentTransaction.objects.get(
            payment_method_id=order.payment_method_id, kind=kind, reference=reference
        )
        return existing, False
    total_field = RUNNING_TOTAL.get(kind)
    if total_field:
        # Keep the order's running total in step with the ledger, in the same
        # transaction. update() writes no history row: money moving without a
        # status change is in the ledger, not in the status history.
        # The caller holds the row lock, so the value read with it is current.
        new_total = money(getattr(order, total_field) + amount)
        if new_total >= STORAGE_LIMIT:
            # Raised inside the caller's transaction: the ledger row goes too.
            raise InvalidPaymentEvent(
                _("Recording %(amount)s would take the order's %(total)s past what can be stored.")
                % {"amount": format_money(amount, order.currency), "total": total_field}
            )
        Order.objects.filter(pk=order.pk).update(**{total_field: new_total})
        setattr(order, total_field, new_total)
    return row, True


def _validated_amount(order: Order, event: PaymentEvent) -> Decimal:
    if event.currency and event.currency.upper() != order.currency:
        raise InvalidPaymentEvent(
            _("Currency %(currency)s is not the order's currency (%(expected)s).")
            % {"currency": event.currency, "expected": order.currency}
        )
    if event.amount is None:
        if event.kind in AMOUNT_REQUIRED:
            raise InvalidPaymentEvent(_("A %(kind)s event needs an amount.") % {"kind": event.kind})
        # A hold and its release are for the order total unless the gateway says.
        if event.kind in (EventKind.AUTHORIZED, EventKind.VOIDED):
            return order.total
        return ZERO
    if event.amount == 0 and event.kind not in AMOUNT_REQUIRED:
        return ZERO
    try:
        return parse_money(event.amount, what=_("The amount"), currency=order.currency)
    except InvalidOrder as exc:
        raise InvalidPaymentEvent(str(exc)) from None


def _describe(event: PaymentEvent, amount: Decimal, currency: str) -> str:
    values = {"amount": format_money(amount, currency), "reference": event.reference}
    texts = {
        EventKind.AUTHORIZED: _("Payment authorized (ref. %(reference)s)."),
        EventKind.CAPTURED: _("Payment captured: %(amount)s (ref. %(reference)s)."),
        EventKind.DECLINED: _("Payment declined (ref. %(reference)s)."),
        EventKind.VOIDED: _("Authorization voided (ref. %(reference)s)."),
        EventKind.REFUNDED: _("Refund: %(amount)s (ref. %(reference)s)."),
    }
    return texts[event.kind] % values


def apply_gateway_event(
    order: Order,
    event: PaymentEvent,
    *,
    inbox: GatewayEvent | None = None,
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

    ``inbox`` is the stored gateway event behind the fact, updated with the
    outcome; without one, an ignored fact is stored as a local event so the
    order still shows up as needing attention. Raise InvalidPaymentEvent for
    a malformed fact (no reference, bad amount, another currency).
    """
    reference = (event.reference or "").strip()
    if not reference:
        raise InvalidPaymentEvent(_("The gateway's reference for this movement is required."))

    with transaction.atomic():
        locked = lock_order(order)
        amount = _validated_amount(locked, event)
        ledger_kind = LEDGER_KIND[event.kind]
        description = _describe(event, amount, locked.currency)
        outer_reason = current_audit().reason
        reason = f"{outer_reason} — {description}" if outer_reason else description
        context = {"channel": channel_or(Channel.GATEWAY), "reason": reason}
        if user is not None:
            context["user"] = user

        with audit_context(**context):
            result = _apply_locked(locked, event, reference, ledger_kind, amount, inbox)
            _record_outcome(locked, event.kind, amount, reference, result, inbox)
        if event.kind == EventKind.CAPTURED and result.outcome != EventOutcome.DUPLICATE:
            _apply_deferred_refunds(locked)
        if event.kind == EventKind.REFUNDED and result.transaction is not None:
            _settle_waiting_reports(locked, reference, recorded_by=inbox)
    return result


def _record_outcome(
    order: Order,
    kind: str,
    amount: Decimal,
    reference: str,
    result: ApplyResult,
    inbox: GatewayEvent | None,
) -> None:
    """Write the outcome on the stored event; keep an ignored local fact as an event."""
    if inbox is None:
        if result.outcome != EventOutcome.IGNORED:
            return
        inbox = GatewayEvent(
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
    inbox.outcome = result.outcome
    inbox.detail = result.reason
    inbox.order = order
    inbox.processed_at = timezone.now()
    inbox.kind = str(kind)
    inbox.amount = amount
    inbox.reference = reference
    inbox.deferred = result.deferred
    if inbox.pk is None:
        inbox.save()
    else:
        inbox.save(
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
        fact = PaymentEvent(EventKind.REFUNDED, waiting.reference, waiting.amount)
        note = _("Refund reported earlier (event %(id)s), recorded once the capture arrived.") % {
            "id": waiting.event_id
        }
        with audit_context(reason=f"{note} {_describe(fact, waiting.amount, order.currency)}"):
            result = _apply_locked(
                order, fact, waiting.reference, TransactionKind.REFUND, waiting.amount, waiting
            )
            _record_outcome(
                order, EventKind.REFUNDED, waiting.amount, waiting.reference, result, waiting
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
    event: PaymentEvent,
    reference: str,
    ledger_kind: str,
    amount: Decimal,
    inbox: GatewayEvent | None,
) -> ApplyResult:
    existing = PaymentTransaction.objects.filter(
        payment_method_id=order.payment_method_id, kind=ledger_kind, reference=reference
    ).first()
    if existing is not None:
        return _duplicate(order, existing)

    captured, refunded = order.captured_amount, order.refunded_amount
    if event.kind == EventKind.REFUNDED and amount > captured - refunded:
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

    transition = getattr(order, TRANSITION[event.kind])
    allowed = can_proceed(transition)
    row, created = record_transaction(
        order=order,
        kind=ledger_kind,
        amount=amount,
        reference=reference,
        event=inbox,
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
            % {"kind": event.kind, "status": PaymentStatus(order.status).label},
            row,
        )

    old = order.status
    if event.kind == EventKind.CAPTURED:
        transition(net_paid=captured + amount - refunded)
    elif event.kind == EventKind.REFUNDED:
        transition(net_paid=captured - refunded - amount)
    else:
        transition()
    if order.status != old:
        save_status(order)
    return ApplyResult(EventOutcome.APPLIED, order, "", row)


# -- staff-initiated money actions -------------------------------------------------


@dataclass(frozen=True)
class _StaffAction:
    kind: EventKind
    refused: str
    """Why the order's status does not allow it (n: number, s: status)."""
    done: str


# Which status allows which action is the model's transitions' rule; staff
# capture additionally needs an authorization at the gateway to capture.
_STAFF_ACTIONS = {
    "capture": _StaffAction(
        EventKind.CAPTURED,
        gettext_lazy("Only an authorized payment can be captured; order %(n)s is %(s)s."),
        gettext_lazy("captured"),
    ),
    "void": _StaffAction(
        EventKind.VOIDED,
        gettext_lazy("Only an authorized, uncaptured payment can be voided; order %(n)s is %(s)s."),
        gettext_lazy("voided"),
    ),
    "refund": _StaffAction(
        EventKind.REFUNDED,
        gettext_lazy("Only a paid or partially paid order can be refunded; order %(n)s is %(s)s."),
        gettext_lazy("refunded"),
    ),
}


@dataclass(frozen=True)
class _Plan:
    order: Order
    gateway: Gateway
    request: OutboundRequest


def _plan_action(order: Order, action: str, amount: Any, user: Any) -> _Plan:
    """Check permission, capability and balance under the lock; return the request."""
    spec = _STAFF_ACTIONS[action]
    if user is not None and not user.has_perm(f"payments.{action}_payment"):
        raise PermissionDenied(
            _("You are not allowed to %(action)s payments.") % {"action": action}
        )
    with transaction.atomic():
        locked = lock_order(order)
        method = locked.payment_method
        gateway = get_gateway(method.gateway) if method.is_online else None
        if gateway is None:
            raise PaymentError(
                _("%(method)s is not an online gateway: record or return the money by hand.")
                % {"method": method.name}
            )
        if action == "refund" and not method.supports_refunds:
            raise PaymentError(_("%(method)s does not support refunds.") % {"method": method.name})
        transition = getattr(locked, TRANSITION[spec.kind])
        if not can_proceed(transition) or (
            action == "capture" and locked.status == PaymentStatus.AWAITING_PAYMENT
        ):
            raise PaymentError(
                spec.refused % {"n": locked.number, "s": PaymentStatus(locked.status).label}
            )
        captured, refunded = locked.captured_amount, locked.refunded_amount
        currency = locked.currency
        limit = {
            "capture": locked.total - captured,
            "void": locked.total,
            "refund": captured - refunded,
        }[action]
        if amount is None or action == "void":
            value = limit
        else:
            try:
                value = parse_money(amount, what=_("The amount"), currency=currency)
            except InvalidOrder as exc:
                raise PaymentError(str(exc)) from None
        if value <= 0 or value > limit:
            raise PaymentError(
                _("The amount %(amount)s is more than the %(limit)s that can be %(done)s.")
                % {
                    "amount": format_money(value, currency),
                    "limit": format_money(limit, currency),
                    "done": spec.done,
                }
            )
        if action == "refund" and value < limit and not method.supports_partial_refunds:
            raise PaymentError(
                _("%(method)s only refunds the whole balance (%(limit)s).")
                % {"method": method.name, "limit": format_money(limit, currency)}
            )
        checkout = locked.gateway_reference or (
            locked.transactions.filter(
                kind__in=[TransactionKind.AUTHORIZATION, TransactionKind.CAPTURE]
            )
            .order_by("kind", "id")  # an authorization first, else the first capture
            .values_list("reference", flat=True)
            .first()
        )
        if not checkout:
            raise PaymentError(
                _("Order %(n)s has no gateway reference to %(action)s against.")
                % {"n": locked.number, "action": action}
            )
        # The same click twice (same order state, same amount) sends the same
        # key, so the gateway moves the money once.
        key = f"orderflow:{locked.pk}:{action}:{value}:{captured}:{refunded}"
        request = OutboundRequest(
            order_number=locked.number,
            checkout_reference=checkout,
            amount=value,
            currency=currency,
            idempotency_key=key,
        )
    return _Plan(locked, gateway, request)


def _run_action(order: Order, action: str, amount: Any, *, user: Any, reason: str) -> ApplyResult:
    plan = _plan_action(order, action, amount, user)
    method = plan.order.payment_method
    # The gateway call happens outside the row lock: a slow gateway must not
    # block callbacks for the order.
    call = getattr(plan.gateway, action)
    answer = call(plan.request, credentials=method.api_key)
    fact = PaymentEvent(
        kind=_STAFF_ACTIONS[action].kind,
        reference=answer.reference,
        amount=answer.amount,
        currency=plan.request.currency,
    )
    channel = channel_or(Channel.ADMIN if user is not None else Channel.SYSTEM)
    with audit_context(channel=channel, user=user, reason=reason):
        return apply_gateway_event(plan.order, fact, user=user)


def capture_payment(order: Order, amount: Any = None, *, user: Any) -> ApplyResult:
    """
    Capture authorized money through the gateway (default: what is left to pay).

    Raise PermissionDenied without ``payments.capture_payment``, PaymentError
    when the order or method does not allow it, GatewayError when the gateway
    refuses. The gateway's reference is recorded, so its later callback for
    the same capture is a duplicate.
    """
    return _run_action(order, "capture", amount, user=user, reason=_("Captured by staff."))


def void_payment(order: Order, *, user: Any) -> ApplyResult:
    """Release an authorization through the gateway; the order becomes Cancelled."""
    return _run_action(order, "void", None, user=user, reason=_("Voided by staff."))


def refund_payment(order: Order, amount: Any = None, *, user: Any, reason: str) -> ApplyResult:
    """
    Refund through the gateway (default: the whole refundable balance).

    Only where the method supports refunds, partially only where it supports
    partial refunds, never beyond the refundable balance. ``reason`` is
    required and goes to the history.
    """
    reason = (reason or "").strip()
    if not reason:
        raise PaymentError(_("A reason is required to refund."))
    return _run_action(order, "refund", amount, user=user, reason=reason)


def replay_gateway_event(event: GatewayEvent):
    """
    Process a stored failed or unmatched gateway event again, at most once.

    The inbox (``payments.inbox``) owns receiving and processing callbacks;
    this is its replay, reachable with the other payment services.
    """
    from payments.inbox import replay_gateway_event as replay

    return replay(event)
