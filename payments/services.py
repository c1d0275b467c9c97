"""
Payment actions: the one place where money facts meet an order.

``apply_gateway_event`` applies a fact reported by a gateway (a callback, a
staff-initiated capture's answer, a replay) whatever the channel: it locks the
order, records the money once, runs the transition the current status
allows, or keeps the fact as ignored with the reason.

``capture_payment``, ``void_payment`` and ``refund_payment`` are staff asking
a gateway to move money: each is a payment request (``payments.requests``),
recorded before the gateway is called and finished by
``recover_payment_requests`` if the process stops half-way.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
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
from payments import requests as payment_requests
from payments.exceptions import GatewayError, GatewayNoAnswer, InvalidPaymentEvent, PaymentError
from payments.gateways.base import AMOUNT_REQUIRED, EventKind, Gateway, PaymentEvent
from payments.gateways.registry import get_gateway
from payments.models import (
    EventOutcome,
    GatewayEvent,
    PaymentRequest,
    PaymentTransaction,
    RequestAction,
    RequestStatus,
    TransactionKind,
)

logger = logging.getLogger("orderflow.payments.requests")

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
#
# Each action is a PaymentRequest (payments.requests) in three committed steps:
# recorded under the order's lock, answered by the gateway outside it, applied.
# The request's token, issued with the staff's form, gives the idempotency
# key: the same click sent twice is refused before the gateway is asked again.


@dataclass(frozen=True)
class _StaffAction:
    kind: EventKind
    refused: str
    """Why the order's status does not allow it (n: number, s: status)."""
    done: str


# Which status allows which action is the model's transitions' rule; staff
# capture additionally needs an authorization at the gateway to capture.
_STAFF_ACTIONS = {
    RequestAction.CAPTURE: _StaffAction(
        EventKind.CAPTURED,
        gettext_lazy("Only an authorized payment can be captured; order %(n)s is %(s)s."),
        gettext_lazy("captured"),
    ),
    RequestAction.VOID: _StaffAction(
        EventKind.VOIDED,
        gettext_lazy("Only an authorized, uncaptured payment can be voided; order %(n)s is %(s)s."),
        gettext_lazy("voided"),
    ),
    RequestAction.REFUND: _StaffAction(
        EventKind.REFUNDED,
        gettext_lazy("Only a paid or partially paid order can be refunded; order %(n)s is %(s)s."),
        gettext_lazy("refunded"),
    ),
}


def _submit_request(
    order: Order, action: str, amount: Any, *, user: Any, reason: str, token: str | None
) -> tuple[PaymentRequest, Gateway]:
    """
    Check permission, capability and balance under the lock; record the request.

    The request is committed when this returns: the gateway is never asked
    for anything not written down first. The transaction is durable, so a
    caller's open transaction (which could still roll the request back) is
    an error, not a silent risk.
    """
    spec = _STAFF_ACTIONS[action]
    if user is not None and not user.has_perm(f"payments.{action}_payment"):
        raise PermissionDenied(
            _("You are not allowed to %(action)s payments.") % {"action": action}
        )
    token = new_request_token() if token is None else payment_requests.clean_token(token)
    channel = channel_or(Channel.ADMIN if user is not None else Channel.SYSTEM)
    with transaction.atomic(durable=True):
        locked = lock_order(order)
        currency = locked.currency
        value: Decimal | None = None
        if amount is not None and action != RequestAction.VOID:
            try:
                value = parse_money(amount, what=_("The amount"), currency=currency)
            except InvalidOrder as exc:
                raise PaymentError(str(exc)) from None
        # Before any other check: the second click of a double click is told
        # what became of the first, even once the order's status has moved on.
        payment_requests.check_token_unused(token, order=locked, action=action, amount=value)

        method = locked.payment_method
        gateway = get_gateway(method.gateway) if method.is_online else None
        if gateway is None:
            raise PaymentError(
                _("%(method)s is not an online gateway: record or return the money by hand.")
                % {"method": method.name}
            )
        if action == RequestAction.REFUND and not method.supports_refunds:
            raise PaymentError(_("%(method)s does not support refunds.") % {"method": method.name})
        transition = getattr(locked, TRANSITION[spec.kind])
        if not can_proceed(transition) or (
            action == RequestAction.CAPTURE and locked.status == PaymentStatus.AWAITING_PAYMENT
        ):
            raise PaymentError(
                spec.refused % {"n": locked.number, "s": PaymentStatus(locked.status).label}
            )
        captured, refunded = locked.captured_amount, locked.refunded_amount
        limit = {
            RequestAction.CAPTURE: locked.total - captured,
            RequestAction.VOID: locked.total,
            RequestAction.REFUND: captured - refunded,
        }[action]
        default = value is None
        if default:
            value = limit
        if value <= 0 or value > limit:
            raise PaymentError(
                _("The amount %(amount)s is more than the %(limit)s that can be %(done)s.")
                % {
                    "amount": format_money(value, currency),
                    "limit": format_money(limit, currency),
                    "done": spec.done,
                }
            )
        # Requests of other intents still in flight may move their money any
        # moment: two intents racing for one balance must not both be sent.
        in_flight = payment_requests.pending_amount(locked, action)
        if in_flight:
            available = limit - in_flight
            if default:
                value = available
            if value <= 0 or value > available:
                raise PaymentError(
                    _(
                        "%(pending)s of order %(n)s is already being %(done)s by another "
                        "request still in progress; at most %(available)s more can be "
                        "%(done)s until it finishes."
                    )
                    % {
                        "pending": format_money(in_flight, currency),
                        "n": locked.number,
                        "done": spec.done,
                        "available": format_money(max(available, ZERO), currency),
                    }
                )
        if action == RequestAction.REFUND and value < limit and not method.supports_partial_refunds:
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
        payment_request = payment_requests.record_request(
            order=locked,
            action=action,
            amount=value,
            token=token,
            checkout_reference=checkout,
            user=user,
            channel=channel,
            reason=reason,
        )
    return payment_request, gateway


def _send_request(payment_request: PaymentRequest, *, gateway: Gateway, user: Any) -> ApplyResult:
    """
    Ask the gateway, keep its answer, then apply it; no lock is held meanwhile.

    A refusal (GatewayError) fails the request: no money moved. Anything else
    (no answer, a crash) leaves it pending, because the gateway may have
    acted; asking again with the same key then gives the same answer.
    """
    call = getattr(gateway, payment_request.action)
    outbound = payment_requests.outbound(payment_request, order_number=payment_request.order.number)
    try:
        answer = call(outbound, credentials=payment_request.payment_method.api_key)
    except GatewayNoAnswer as exc:
        payment_requests.note(payment_request, str(exc))
        raise
    except GatewayError as exc:
        payment_requests.mark_failed(payment_request, str(exc))
        raise
    except Exception as exc:
        # Only the error's type: its text may carry what a library received.
        payment_requests.note(
            payment_request,
            _(
                "The gateway call did not finish (%(error)s); whether money moved is "
                "known once the gateway is asked again."
            )
            % {"error": type(exc).__name__},
        )
        raise
    # Committed before it is applied: a crash from here on loses no answer.
    payment_requests.store_answer(payment_request, answer)
    return _apply_answer(payment_request, user=user)


def _apply_answer(payment_request: PaymentRequest, *, user: Any) -> ApplyResult:
    """Apply a request's stored answer and complete the request, in one transaction."""
    with transaction.atomic():
        # The order first, then the request: the lock order of every path.
        locked = lock_order(payment_request.order_id)
        current = PaymentRequest.objects.select_for_update().get(pk=payment_request.pk)
        if current.status != RequestStatus.PENDING:
            return ApplyResult(
                EventOutcome.DUPLICATE,
                locked,
                _("Payment request %(id)s was already completed.") % {"id": current.pk},
                current.transaction,
            )
        fact = PaymentEvent(
            kind=_STAFF_ACTIONS[current.action].kind,
            reference=current.answer_reference,
            amount=current.answer_amount,
            currency=current.currency,
        )
        result = apply_gateway_event(locked, fact, user=user)
        payment_requests.mark_succeeded(current, row=result.transaction, detail=result.reason)
    payment_request.status = current.status
    payment_request.transaction = current.transaction
    payment_request.completed_at = current.completed_at
    return result


def _run_action(
    order: Order, action: str, amount: Any, *, user: Any, reason: str, token: str | None
) -> ApplyResult:
    payment_request, gateway = _submit_request(
        order, action, amount, user=user, reason=reason, token=token
    )
    # The gateway call happens outside the row lock: a slow gateway must not
    # block callbacks for the order.
    with audit_context(channel=payment_request.channel, user=user, reason=reason):
        return _send_request(payment_request, gateway=gateway, user=user)


def new_request_token() -> str:
    """Return a token for one staff intent; issue it with the form that submits it."""
    return secrets.token_urlsafe(24)


def capture_payment(
    order: Order, amount: Any = None, *, user: Any, token: str | None = None
) -> ApplyResult:
    """
    Capture authorized money through the gateway (default: what is left to pay).

    ``token`` identifies the staff's intent (see ``new_request_token``); None
    is a new intent. Raise PermissionDenied without
    ``payments.capture_payment``, RequestAlreadySubmitted when the token was
    used for this capture already, PaymentError when the order or method does
    not allow it, GatewayError when the gateway refuses. The gateway's
    reference is recorded, so its later callback for the same capture is a
    duplicate.
    """
    return _run_action(
        order, RequestAction.CAPTURE, amount, user=user, reason=_("Captured by staff."), token=token
    )


def void_payment(order: Order, *, user: Any, token: str | None = None) -> ApplyResult:
    """Release an authorization through the gateway; the order becomes Cancelled."""
    return _run_action(
        order, RequestAction.VOID, None, user=user, reason=_("Voided by staff."), token=token
    )


def refund_payment(
    order: Order, amount: Any = None, *, user: Any, reason: str, token: str | None = None
) -> ApplyResult:
    """
    Refund through the gateway (default: the whole refundable balance).

    Only where the method supports refunds, partially only where it supports
    partial refunds, never beyond the refundable balance less the refunds
    still in flight. ``reason`` is required and goes to the history; ``token``
    works as for ``capture_payment``.
    """
    reason = (reason or "").strip()
    if not reason:
        raise PaymentError(_("A reason is required to refund."))
    return _run_action(order, RequestAction.REFUND, amount, user=user, reason=reason, token=token)


# -- recovering interrupted requests -------------------------------------------------

RESEND_WITHIN = timedelta(hours=23)
"""How old an unanswered request may be and still be sent again with its key.
Stripe keeps idempotency keys for at least 24 hours; past that, sending the
same key again could move the money a second time."""


@dataclass(frozen=True)
class RecoveredRequest:
    """What recovery did (or, in a dry run, would do) with one pending request."""

    request: PaymentRequest
    status: str
    """The request's status afterwards: ``pending`` means still unresolved."""
    done: str


@dataclass(frozen=True)
class RecoverySummary:
    requests: tuple[RecoveredRequest, ...]
    dry_run: bool = False

    @property
    def unresolved(self) -> tuple[RecoveredRequest, ...]:
        return tuple(r for r in self.requests if r.status == RequestStatus.PENDING)

    def count(self, status: str) -> int:
        return sum(1 for r in self.requests if r.status == status)


def recover_payment_requests(*, older_than: timedelta, dry_run: bool = False) -> RecoverySummary:
    """
    Finish payment requests left pending, e.g. by a process that died mid-way.

    A stored answer is applied without calling the gateway; without one, the
    gateway is asked again with the request's own idempotency key, which
    gives the same answer, and that is applied. Either way the ledger records
    the money once. Requests younger than ``older_than`` may still be in
    flight and are left alone. ``dry_run`` says what would be done, and does
    nothing.
    """
    stuck = (
        PaymentRequest.objects.stuck(older_than)
        .select_related("order", "payment_method")
        .order_by("created_at", "id")
    )
    return RecoverySummary(tuple(_recover(r, dry_run=dry_run) for r in stuck), dry_run)


def _recover(payment_request: PaymentRequest, *, dry_run: bool) -> RecoveredRequest:
    pending = RequestStatus.PENDING
    if payment_request.answered_at is not None:
        values = {"reference": payment_request.answer_reference}
        if dry_run:
            return RecoveredRequest(
                payment_request,
                pending,
                _("would record the stored answer (%(reference)s)") % values,
            )
        done = _("recorded the stored answer (%(reference)s)") % values
        gateway = None
    else:
        if payment_request.created_at < timezone.now() - RESEND_WITHIN:
            return RecoveredRequest(
                payment_request,
                pending,
                _(
                    "no answer stored, and too old to ask the gateway again safely; "
                    "check the payment in the gateway's dashboard"
                ),
            )
        gateway = get_gateway(payment_request.payment_method.gateway)
        if gateway is None:
            return RecoveredRequest(
                payment_request,
                pending,
                _("no gateway adapter %(key)r to ask")
                % {"key": payment_request.payment_method.gateway},
            )
        values = {"key": payment_request.idempotency_key}
        if dry_run:
            return RecoveredRequest(
                payment_request, pending, _("would ask the gateway again (key %(key)s)") % values
            )
        done = _("asked the gateway again (key %(key)s)") % values

    reason = _("Payment request %(id)s (%(action)s) recovered: %(reason)s") % {
        "id": payment_request.pk,
        "action": payment_request.get_action_display().lower(),
        "reason": payment_request.reason,
    }
    try:
        with audit_context(channel=channel_or(Channel.SYSTEM), user=None, reason=reason):
            if gateway is None:
                _apply_answer(payment_request, user=None)
            else:
                _send_request(payment_request, gateway=gateway, user=None)
    except PaymentError as exc:
        # A refusal failed the request; anything else left it pending.
        done = f"{done}: {exc}"
        if not isinstance(exc, GatewayError):
            payment_requests.note(payment_request, str(exc))
    except Exception as exc:
        logger.exception("Could not recover payment request %s", payment_request.pk)
        done = f"{done}: {type(exc).__name__}"
        payment_requests.note(
            payment_request,
            _("Recovery failed (%(error)s); see the logs.") % {"error": type(exc).__name__},
        )
    status = PaymentRequest.objects.values_list("status", flat=True).get(pk=payment_request.pk)
    return RecoveredRequest(payment_request, status, done)


def replay_gateway_event(event: GatewayEvent):
    """
    Process a stored failed or unmatched gateway event again, at most once.

    The inbox (``payments.inbox``) owns receiving and processing callbacks;
    this is its replay, reachable with the other payment services.
    """
    from payments.inbox import replay_gateway_event as replay

    return replay(event)
