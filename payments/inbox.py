"""
The gateway inbox: receive, store, process and replay callbacks.

A callback that passes the signature check is stored first, in its own
committed transaction, and processed afterwards in another: whatever the
processing does (a crash, a rollback, a bug), what the gateway sent is kept
and can be replayed. Processing locks the stored event, then the order, so a
given event is applied at most once however many times it arrives.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from orderflow.audit import Channel, audit_context, channel_or
from orders.models import Order
from payments.exceptions import InvalidPaymentEvent, PaymentError
from payments.gateways.base import MalformedCallback, ParsedCallback, SignatureError
from payments.gateways.registry import get_gateway
from payments.models import EventOutcome, GatewayEvent, PaymentMethod, PaymentMethodKind
from payments.services import apply_gateway_event

logger = logging.getLogger("orderflow.payments.callbacks")

FINAL_OUTCOMES = frozenset(
    {EventOutcome.APPLIED, EventOutcome.DUPLICATE, EventOutcome.IGNORED, EventOutcome.REJECTED}
)
REPLAYABLE_OUTCOMES = frozenset(
    {EventOutcome.FAILED, EventOutcome.UNMATCHED, EventOutcome.RECEIVED}
)


@dataclass(frozen=True)
class CallbackResponse:
    """What to answer the gateway, and what was stored."""

    http_status: int
    body: dict[str, Any]
    event: GatewayEvent | None = field(default=None, compare=False)


def _error(status: int, message: str, event: GatewayEvent | None = None) -> CallbackResponse:
    return CallbackResponse(status, {"error": message}, event)


def receive_callback(
    *, method_code: str, body: bytes, headers: Mapping[str, str]
) -> CallbackResponse:
    """Verify, store and process one callback; return the answer for the gateway."""
    method = PaymentMethod.objects.filter(
        code=method_code, is_active=True, kind=PaymentMethodKind.ONLINE
    ).first()
    gateway = get_gateway(method.gateway) if method is not None else None
    if method is None or gateway is None:
        return _error(404, _("No active online payment method %(code)r.") % {"code": method_code})

    try:
        gateway.verify(body=body, headers=headers, secret=method.webhook_secret)
    except SignatureError as exc:
        # The message names the problem, never the header or the secret.
        PaymentMethod.objects.filter(pk=method.pk).update(
            signature_failures=F("signature_failures") + 1,
            last_signature_failure_at=timezone.now(),
        )
        logger.warning("Refused a callback for payment method %s: %s", method.code, exc)
        return _error(401, _("Invalid signature: %(problem)s.") % {"problem": exc})

    try:
        parsed = gateway.parse(body)
    except MalformedCallback as exc:
        event = _store_rejected(method, body, str(exc))
        logger.info("Rejected a malformed callback for %s: %s", method.code, exc)
        return _error(400, str(exc), event)

    event = _store(method, parsed, body)
    return process_event(event)


def _store(method: PaymentMethod, parsed: ParsedCallback, body: bytes) -> GatewayEvent:
    """Write the event in its own transaction (or return the one already stored)."""
    try:
        with transaction.atomic():
            return GatewayEvent.objects.create(
                payment_method=method,
                event_id=parsed.event_id,
                event_type=parsed.event_type,
                raw_body=body.decode("utf-8", errors="replace"),
            )
    except IntegrityError:
        return GatewayEvent.objects.get(payment_method=method, event_id=parsed.event_id)


def _store_rejected(method: PaymentMethod, body: bytes, problem: str) -> GatewayEvent:
    # No event id can be trusted in an unusable body: the body's digest keeps
    # repeated deliveries of the same bytes to one row.
    digest = hashlib.sha256(body).hexdigest()[:40]
    with transaction.atomic():
        event, _created = GatewayEvent.objects.get_or_create(
            payment_method=method,
            event_id=f"rejected:{digest}",
            defaults={
                "event_type": "unreadable",
                "raw_body": body.decode("utf-8", errors="replace"),
                "outcome": EventOutcome.REJECTED,
                "detail": problem,
                "processed_at": timezone.now(),
                "attempts": 1,
            },
        )
    return event


def _find_order(method: PaymentMethod, parsed: ParsedCallback) -> Order | None:
    orders = Order.objects.all()
    if parsed.order_number:
        return orders.filter(number=parsed.order_number).first()
    if parsed.order_reference:
        return orders.filter(
            payment_method=method, gateway_reference=parsed.order_reference
        ).first()
    return None


def _finish(event: GatewayEvent, outcome: str, detail: str, order: Order | None = None) -> None:
    event.outcome = outcome
    event.detail = detail
    event.order = order if order is not None else event.order
    event.processed_at = timezone.now()
    event.save(update_fields=["outcome", "detail", "order", "processed_at", "attempts"])


def _mark_after_rollback(event: GatewayEvent, outcome: str, detail: str) -> None:
    with transaction.atomic():
        GatewayEvent.objects.filter(pk=event.pk).update(
            outcome=outcome,
            detail=detail[:2000],
            processed_at=timezone.now(),
            attempts=F("attempts") + 1,
        )
    event.refresh_from_db()


def process_event(event: GatewayEvent) -> CallbackResponse:
    """Apply a stored event at most once and map the outcome to an HTTP answer."""
    try:
        with transaction.atomic(), audit_context(channel=channel_or(Channel.GATEWAY)):
            row = (
                GatewayEvent.objects.select_for_update(of=("self",))
                .select_related("payment_method")
                .get(pk=event.pk)
            )
            if row.outcome in FINAL_OUTCOMES:
                return CallbackResponse(200, {"status": "duplicate"}, row)
            row.attempts += 1
            method = row.payment_method
            gateway = get_gateway(method.gateway)
            if gateway is None:
                raise PaymentError(f"no gateway adapter {method.gateway!r}")
            parsed = gateway.parse(row.raw_body.encode("utf-8"))
            if parsed.event is None:
                detail = parsed.ignore_reason or _(
                    "Event type %(type)s is not used by orderflow."
                ) % {"type": row.event_type}
                _finish(row, EventOutcome.IGNORED, detail)
                return CallbackResponse(200, {"status": "ignored", "reason": detail}, row)
            order = _find_order(method, parsed)
            if order is None:
                detail = _("No order %(order)s (yet); the event can be replayed.") % {
                    "order": parsed.order_number or parsed.order_reference or "?"
                }
                _finish(row, EventOutcome.UNMATCHED, detail)
                return CallbackResponse(404, {"error": detail}, row)
            if order.payment_method_id != method.pk:
                raise InvalidPaymentEvent(
                    _("Order %(order)s is not paid with %(method)s.")
                    % {"order": order.number, "method": method.code}
                )
            # apply_gateway_event saves the outcome and the attempt count together.
            result = apply_gateway_event(order, parsed.event, inbox=row)
    except (InvalidPaymentEvent, MalformedCallback) as exc:
        _mark_after_rollback(event, EventOutcome.REJECTED, str(exc))
        return _error(400, str(exc), event)
    except Exception as exc:
        logger.exception("Processing gateway event %s failed; stored for replay.", event.pk)
        _mark_after_rollback(event, EventOutcome.FAILED, f"{type(exc).__name__}: {exc}")
        return _error(500, _("Processing failed; the event is stored and will be replayed."), event)

    if result.outcome == EventOutcome.APPLIED:
        return CallbackResponse(
            200, {"status": "applied", "order_status": result.order.status}, row
        )
    if result.outcome == EventOutcome.DUPLICATE:
        return CallbackResponse(200, {"status": "duplicate"}, row)
    return CallbackResponse(200, {"status": "ignored", "reason": result.reason}, row)


def replay_gateway_event(event: GatewayEvent) -> CallbackResponse:
    """Process a failed or unmatched event again; applies it at most once."""
    if event.outcome not in REPLAYABLE_OUTCOMES:
        raise PaymentError(
            _("Event %(id)s is %(outcome)s; only failed or unmatched events are replayed.")
            % {"id": event.event_id, "outcome": event.get_outcome_display().lower()}
        )
    with audit_context(reason=_("Replay of gateway event %(id)s") % {"id": event.event_id}):
        return process_event(event)


def acknowledge_events(events, *, user: Any) -> int:
    """Mark ignored events as seen by staff; their orders stop needing attention for them."""
    return events.filter(outcome=EventOutcome.IGNORED, acknowledged_at__isnull=True).update(
        acknowledged_at=timezone.now(), acknowledged_by=user
    )
