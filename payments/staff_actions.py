"""
Staff asking a gateway to move money: capture, void and refund as requests.

Each action is a ``PaymentRequest`` in three committed steps: recorded under
the order's lock (permission, capability and balance checked, money of other
requests in flight held back), sent to the gateway outside the lock, and its
answer stored before it is applied to the ledger. The request's token, issued
with the staff's form, gives the idempotency key, so the same click sent
twice never moves money twice, and an interrupted request is finished later
by ``recover`` without moving money again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_fsm import can_proceed

from orderflow.audit import Channel, audit_context, channel_or
from orderflow.money import ZERO, InvalidAmount, format_money, parse_amount
from orders.models import Order, PaymentStatus
from payments import requests as payment_requests
from payments.exceptions import GatewayError, GatewayNoAnswer, PaymentError
from payments.facts import TRANSITION, ApplyResult, apply_fact
from payments.gateways.base import FactKind, Gateway, MoneyFact
from payments.gateways.registry import get_gateway
from payments.models import (
    EventOutcome,
    PaymentRequest,
    RequestAction,
    RequestStatus,
    TransactionKind,
)

logger = logging.getLogger("orderflow.payments.requests")

# # Each action is a PaymentRequest (payments.requests) in three committed steps:
# recorded under the order's lock, answered by the gateway outside it, applied.
# The request's token, issued with the staff's form, gives the idempotency
# key: the same click sent twice is refused before the gateway is asked again.


@dataclass(frozen=True)
class _StaffAction:
    kind: FactKind
    refused: str
    """Why the order's status does not allow it (n: number, s: status)."""
    done: str


# Capturing and voiding an authorization are one decision, one permission.
PERMISSIONS = {
    RequestAction.CAPTURE: "payments.capture_payment",
    RequestAction.VOID: "payments.capture_payment",
    RequestAction.REFUND: "payments.refund_payment",
}

# Which status allows which action is the model's transitions' rule; staff
# capture additionally needs an authorization at the gateway to capture.
_STAFF_ACTIONS = {
    RequestAction.CAPTURE: _StaffAction(
        FactKind.CAPTURED,
        gettext_lazy("Only an authorized payment can be captured; order %(n)s is %(s)s."),
        gettext_lazy("captured"),
    ),
    RequestAction.VOID: _StaffAction(
        FactKind.VOIDED,
        gettext_lazy("Only an authorized, uncaptured payment can be voided; order %(n)s is %(s)s."),
        gettext_lazy("voided"),
    ),
    RequestAction.REFUND: _StaffAction(
        FactKind.REFUNDED,
        gettext_lazy("Only a paid or partially paid order can be refunded; order %(n)s is %(s)s."),
        gettext_lazy("refunded"),
    ),
}


def submit(
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
    if user is not None and not user.has_perm(PERMISSIONS[action]):
        raise PermissionDenied(
            _("You are not allowed to %(action)s payments.") % {"action": action}
        )
    token = payment_requests.new_token() if token is None else payment_requests.clean_token(token)
    channel = channel_or(Channel.ADMIN if user is not None else Channel.SYSTEM)
    with transaction.atomic(durable=True):
        locked = Order.objects.lock(order)
        currency = locked.currency
        value: Decimal | None = None
        if amount is not None and action != RequestAction.VOID:
            try:
                value = parse_amount(amount, what=_("The amount"), currency=currency)
            except InvalidAmount as exc:
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


def send(payment_request: PaymentRequest, *, gateway: Gateway, user: Any) -> ApplyResult:
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
    return apply_answer(payment_request, user=user)


def apply_answer(payment_request: PaymentRequest, *, user: Any) -> ApplyResult:
    """
    Apply a request's stored answer and complete the request, in one transaction.

    A request marked failed meanwhile (a refusal seen by another process) is
    applied all the same: the gateway's answer proves the money moved.
    """
    with transaction.atomic():
        # The order first, then the request: the lock order of every path.
        locked = Order.objects.lock(payment_request.order_id)
        current = PaymentRequest.objects.select_for_update().get(pk=payment_request.pk)
        failed_earlier = current.status == RequestStatus.FAILED and current.answered_at is not None
        if current.status != RequestStatus.PENDING and not failed_earlier:
            return ApplyResult(
                EventOutcome.DUPLICATE,
                locked,
                _("Payment request %(id)s was already completed.") % {"id": current.pk},
                current.transaction,
            )
        fact = MoneyFact(
            kind=_STAFF_ACTIONS[current.action].kind,
            reference=current.answer_reference,
            amount=current.answer_amount,
            currency=current.currency,
        )
        result = apply_fact(locked, fact, user=user)
        detail = result.reason
        if failed_earlier:
            earlier = _(
                "It was marked failed earlier (%(detail)s), but the gateway's answer "
                "shows the money moved."
            ) % {"detail": current.detail}
            detail = f"{earlier} {detail}".strip()
        payment_requests.mark_succeeded(current, row=result.transaction, detail=detail)
    payment_request.status = current.status
    payment_request.transaction = current.transaction
    payment_request.completed_at = current.completed_at
    return result


def run(
    order: Order, action: str, amount: Any, *, user: Any, reason: str, token: str | None
) -> ApplyResult:
    payment_request, gateway = submit(order, action, amount, user=user, reason=reason, token=token)
    # The gateway call happens outside the row lock: a slow gateway must not
    # block callbacks for the order. The request is claimed from the moment
    # it is recorded, so recovery never sends it while this process does.
    try:
        with audit_context(channel=payment_request.channel, user=user, reason=reason):
            return send(payment_request, gateway=gateway, user=user)
    finally:
        payment_requests.release(payment_request)


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


def recover(*, older_than: timedelta, dry_run: bool = False) -> RecoverySummary:
    """
    Finish payment requests left pending, e.g. by a process that died mid-way.

    A stored answer is applied without calling the gateway; without one, the
    gateway is asked again with the request's own idempotency key, which
    gives the same answer, and that is applied. Either way the ledger records
    the money once. Requests younger than ``older_than`` are left alone, and
    so is any request another process has claimed (the staff action still
    waiting for the gateway, another recovery), whatever its age: each
    request is claimed before it is touched. ``dry_run`` says what would be
    done, and does nothing.
    """
    stuck = (
        PaymentRequest.objects.stuck(older_than)
        .select_related("order", "payment_method")
        .order_by("created_at", "id")
    )
    return RecoverySummary(tuple(_recover(r, dry_run=dry_run) for r in stuck), dry_run)


def _recover(payment_request: PaymentRequest, *, dry_run: bool) -> RecoveredRequest:
    if dry_run:
        return _resolve(payment_request, dry_run=True)
    if not payment_requests.claim(payment_request):
        status = PaymentRequest.objects.values_list("status", flat=True).get(pk=payment_request.pk)
        return RecoveredRequest(
            payment_request, status, _("left alone: another process is working on it")
        )
    try:
        # What the list said may be stale: another process may have stored an
        # answer before this claim.
        payment_request.refresh_from_db(
            fields=["status", "answer_reference", "answer_amount", "answered_at", "detail"]
        )
        return _resolve(payment_request, dry_run=False)
    finally:
        payment_requests.release(payment_request)


def _resolve(payment_request: PaymentRequest, *, dry_run: bool) -> RecoveredRequest:
    """Apply the stored answer or ask the gateway again; the caller holds the claim."""
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
                apply_answer(payment_request, user=None)
            else:
                send(payment_request, gateway=gateway, user=None)
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
