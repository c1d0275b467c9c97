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

from django.db import connection, router, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from orderflow.audit import Channel, audit_context, channel_or
from orderflow.compiled import CompiledQuery, mark_int, mark_str
from orderflow.inserts import insert_unless_present
from orders.attention import refresh_attention, refresh_attention_of
from orders.models import Order
from payments.exceptions import InvalidPaymentEvent, PaymentError
from payments.gateways.base import MalformedCallback, ParsedCallback, SignatureError, shown
from payments.gateways.registry import get_gateway
from payments.models import (
    FINAL_OUTCOMES,
    REPLAYABLE_OUTCOMES,
    EventOutcome,
    GatewayEvent,
    PaymentMethod,
    PaymentMethodKind,
    PaymentTransaction,
)
from payments.services import apply_gateway_event

logger = logging.getLogger("orderflow.payments.callbacks")


@dataclass(frozen=True)
class CallbackResponse:
    """What to answer the gateway, and what was stored."""

    http_status: int
    body: dict[str, Any]
    event: GatewayEvent | None = field(default=None, compare=False)


def _error(status: int, message: str, event: GatewayEvent | None = None) -> CallbackResponse:
    return CallbackResponse(status, {"error": message}, event)


def storable_text(body: bytes) -> str:
    """
    Return a body as text any database can store.

    UTF-8 without NUL bytes (every body orderflow can read) is kept exactly;
    anything else is kept readable with backslash escapes (``\\xff``,
    ``\\x00``), since PostgreSQL text cannot hold a NUL.
    """
    return body.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:40]


# The reads every callback makes, compiled once (orderflow.compiled).
_ACTIVE_ONLINE_METHOD = CompiledQuery(
    "inbox_active_online_method",
    PaymentMethod,
    lambda code: PaymentMethod.objects.filter(
        code=code, is_active=True, kind=PaymentMethodKind.ONLINE
    ).order_by("pk")[:1],
    mark_str(0),
)
_EVENT_LOCKED = CompiledQuery(
    "inbox_event_locked",
    GatewayEvent,
    lambda pk: GatewayEvent.objects.select_for_update(of=("self",)).filter(pk=pk).order_by(),
    mark_int(0),
)
# The id of the order with this number paid with this method: the inbox
# event's order, found inside the statement that stores the event.
_ORDER_ID_BY_NUMBER = CompiledQuery(
    "inbox_order_id_by_number",
    Order,
    lambda number, method_pk: (
        Order.objects.filter(number=number, payment_method_id=method_pk)
        .order_by()
        .values_list("pk")
    ),
    mark_str(0),
    mark_int(1),
)
_ORDER_BY_NUMBER_LOCKED = CompiledQuery(
    "inbox_order_by_number_locked",
    Order,
    lambda number: Order.objects.locking().filter(number=number).order_by(),
    mark_str(0),
)


@sensitive_variables("headers")
def receive_callback(
    *, method_code: str, body: bytes, headers: Mapping[str, str]
) -> CallbackResponse:
    """Verify, store and process one callback; return the answer for the gateway."""
    method = next(iter(_ACTIVE_ONLINE_METHOD.instances(method_code)), None)
    gateway = get_gateway(method.gateway) if method is not None else None
    if method is None or gateway is None:
        return _error(404, _("No active online payment method %(code)r.") % {"code": method_code})

    try:
        gateway.verify(body=body, headers=headers, secret=method.webhook_secret)
    except SignatureError as exc:
        return _refuse(method, str(exc))
    except (ValueError, TypeError, UnicodeError, OverflowError) as exc:
        # An adapter tripping over a header nobody anticipated: still a bad
        # signature, never a 500. The exception's text may quote the header.
        return _refuse(method, f"the signature header cannot be read ({type(exc).__name__})")

    try:
        parsed = gateway.parse(body)
    except MalformedCallback as exc:
        event = _store_unread(method, body, EventOutcome.REJECTED, str(exc))
        logger.info("Rejected a malformed callback for %s: %s", method.code, exc)
        return _error(400, str(exc), event)
    except Exception as exc:
        # A reader's bug must not lose what the gateway sent: keep it, replayable.
        logger.exception("Reading a signed callback for %s failed; stored.", method.code)
        event = _store_unread(method, body, EventOutcome.FAILED, f"{type(exc).__name__}: {exc}")
        return _error(500, _("Processing failed; the event is stored and will be replayed."), event)

    event, conflict = _store(method, parsed, body)
    if conflict:
        return _error(409, event.detail, event)
    return process_event(event, method=method)


def _refuse(method: PaymentMethod, problem: str) -> CallbackResponse:
    """Count and log a bad signature; the message names the problem, never the header."""
    PaymentMethod.objects.filter(pk=method.pk).update(
        signature_failures=F("signature_failures") + 1,
        last_signature_failure_at=timezone.now(),
    )
    logger.warning("Refused a callback for payment method %s: %s", method.code, problem)
    return _error(401, _("Invalid signature: %(problem)s.") % {"problem": problem})


def _store(method: PaymentMethod, parsed: ParsedCallback, body: bytes) -> tuple[GatewayEvent, bool]:
    """
    Write the event in its own committed transaction; return it and whether it conflicts.

    The same event id again is the stored event (a redelivery) when it says the
    same thing; with other contents, the new body is kept as a conflict.

    The write is one ``INSERT ... ON CONFLICT DO NOTHING`` in autocommit mode,
    committed when it returns; a caller's open transaction, which might still
    roll it back, is refused (RuntimeError, as ``atomic(durable=True)``).
    The event is linked to its order now, so the order is flagged if
    processing never ends; by order number, the order is looked up inside the
    same statement. A fresh "received" event flags nothing yet (the rules
    wait STUCK_AFTER), so its order's stored attention is unchanged.
    """
    if _inside_a_transaction():
        raise RuntimeError(
            "The inbox write must be durable: receive_callback cannot run inside a transaction."
        )
    event = GatewayEvent(
        payment_method=method,
        event_id=parsed.event_id,
        event_type=parsed.event_type,
        raw_body=storable_text(body),
    )
    if parsed.order_number:
        subquery = _ORDER_ID_BY_NUMBER.sql(
            parsed.order_number, method.pk, using=router.db_for_write(GatewayEvent)
        )
        linked = {"order": subquery}
    else:
        order = _find_order(method, parsed)
        event.order = order if order is not None and order.payment_method_id == method.pk else None
        linked = None
    if insert_unless_present(event, "gateway_event_once_per_method", computed=linked) is not None:
        return event, False
    stored = GatewayEvent.objects.get(payment_method=method, event_id=parsed.event_id)
    if stored.raw_body == storable_text(body) or _says_the_same(method, stored, parsed):
        return stored, False
    return _store_conflict(method, body, parsed, stored), True


def _inside_a_transaction() -> bool:
    """
    Whether a caller's transaction is open, as ``atomic(durable=True)`` sees it.

    As in Django's own durability check, the blocks a test case opens around
    each test (marked ``_from_testcase``) do not count.
    """
    blocks = [b for b in connection.atomic_blocks if not getattr(b, "_from_testcase", False)]
    return bool(blocks) or (not connection.atomic_blocks and not connection.get_autocommit())


def _says_the_same(method: PaymentMethod, stored: GatewayEvent, parsed: ParsedCallback) -> bool:
    """Whether a redelivered body reports the same fact (gateways may renew other fields)."""
    gateway = get_gateway(method.gateway)
    try:
        before = gateway.parse(stored.raw_body.encode("utf-8"))
    except Exception:
        return False
    return before == parsed


def _store_conflict(
    method: PaymentMethod, body: bytes, parsed: ParsedCallback, stored: GatewayEvent
) -> GatewayEvent:
    detail = _(
        "Event %(id)s was received before (gateway event %(pk)s) with other contents; "
        "this version was kept for staff to compare and not applied."
    ) % {"id": shown(parsed.event_id), "pk": stored.pk}
    with transaction.atomic(durable=True):
        event, _created = GatewayEvent.objects.get_or_create(
            payment_method=method,
            event_id=f"conflict:{_digest(body)}",
            defaults={
                "event_type": parsed.event_type,
                "raw_body": storable_text(body),
                "outcome": EventOutcome.CONFLICT,
                "detail": detail,
                "order": stored.order,
                "processed_at": timezone.now(),
                "attempts": 1,
            },
        )
        if event.order_id is not None:
            refresh_attention(event.order_id, lock=True)
    logger.warning(
        "Gateway event %s of %s arrived again with other contents; kept as a conflict.",
        stored.pk,
        method.code,
    )
    return event


def _store_unread(method: PaymentMethod, body: bytes, outcome: str, problem: str) -> GatewayEvent:
    """Keep a signed body that could not be read, under its digest, in its own transaction."""
    # No event id can be trusted in an unusable body: the body's digest keeps
    # repeated deliveries of the same bytes to one row.
    with transaction.atomic(durable=True):
        event, _created = GatewayEvent.objects.get_or_create(
            payment_method=method,
            event_id=f"{outcome}:{_digest(body)}",
            defaults={
                "event_type": "unreadable",
                "raw_body": storable_text(body),
                "outcome": outcome,
                "detail": problem,
                "processed_at": timezone.now(),
                "attempts": 1,
            },
        )
    return event


def _find_order(
    method: PaymentMethod, parsed: ParsedCallback, *, lock: bool = False
) -> Order | None:
    """
    Return the order a callback is about, or None.

    By its order number when it names one; else by any of the gateway's ids
    it carries (the payment's, a charge's, a refund's) that the order table
    or the ledger already holds for this method, so that a refund made in
    the gateway's dashboard finds the order its payment belongs to.
    ``lock=True`` reads the order with its row lock (inside a transaction),
    so that it is read once, and current.
    """
    if parsed.order_number and lock:
        return next(iter(_ORDER_BY_NUMBER_LOCKED.instances(parsed.order_number)), None)
    orders = Order.objects.locking() if lock else Order.objects.all()
    if parsed.order_number:
        return orders.filter(number=parsed.order_number).first()
    names = _references(parsed)
    if not names:
        return None
    order = orders.filter(payment_method=method, gateway_reference__in=names).first()
    if order is not None:
        return order
    order_id = (
        PaymentTransaction.objects.filter(payment_method=method, reference__in=names)
        .values_list("order_id", flat=True)
        .first()
    )
    return orders.filter(pk=order_id).first() if order_id else None


def _references(parsed: ParsedCallback) -> list[str]:
    return [name for name in (parsed.order_reference, *parsed.references) if name]


def _adopt_strays(method: PaymentMethod, parsed: ParsedCallback) -> None:
    """
    Process again the callbacks kept as not ours that name this payment.

    A gateway may report a refund before the payment it belongs to: with no
    order number and no known reference, it was answered as not ours and
    kept. Once a callback ties the payment to an order, they are applied.
    """
    names = _references(parsed)
    if parsed.fact is not None and parsed.fact.reference:
        names.append(parsed.fact.reference)
    if not names:
        return
    for stray in _strays_naming(method, names):
        GatewayEvent.objects.filter(pk=stray.pk, outcome=EventOutcome.IGNORED).update(
            outcome=EventOutcome.RECEIVED
        )
        with audit_context(
            reason=_("Gateway event %(id)s, kept as not ours, matched its order")
            % {"id": stray.event_id}
        ):
            process_event(stray)


def _strays(method_pk: int, *names: str):
    return GatewayEvent.objects.filter(
        payment_method_id=method_pk,
        outcome=EventOutcome.IGNORED,
        order__isnull=True,
        kind="",
        reference__in=names,
    ).order_by("received_at", "id")


# Asked after every applied callback, with its few references (padded by
# repeating one, which changes nothing in an IN list).
_STRAY_NAMES = 4
_STRAYS = CompiledQuery(
    "inbox_strays",
    GatewayEvent,
    _strays,
    mark_int(0),
    *(mark_str(n) for n in range(_STRAY_NAMES)),
)


def _strays_naming(method: PaymentMethod, names: list[str]) -> list[GatewayEvent]:
    """The events kept as not ours, of this method, under any of ``names``, oldest first."""
    names = list(dict.fromkeys(names))
    if len(names) > _STRAY_NAMES:
        return list(_strays(method.pk, *names))
    padded = names + [names[-1]] * (_STRAY_NAMES - len(names))
    return _STRAYS.instances(method.pk, *padded)


def _finish(
    event: GatewayEvent,
    outcome: str,
    detail: str,
    order: Order | None = None,
    *,
    fields: tuple[str, ...] = (),
) -> None:
    event.outcome = outcome
    event.detail = detail
    event.order = order if order is not None else event.order
    event.processed_at = timezone.now()
    event.save(update_fields=["outcome", "detail", "order", "processed_at", "attempts", *fields])
    if event.order_id is not None:
        refresh_attention(event.order_id, lock=True)


def _mark_after_rollback(event: GatewayEvent, outcome: str, detail: str) -> None:
    # A final outcome is never downgraded: a redelivery of an applied event
    # that hits a database error leaves it applied.
    with transaction.atomic():
        GatewayEvent.objects.filter(pk=event.pk).exclude(outcome__in=FINAL_OUTCOMES).update(
            outcome=outcome,
            detail=detail[:2000].replace("\x00", "\\x00"),
            processed_at=timezone.now(),
            attempts=F("attempts") + 1,
        )
        event.refresh_from_db()
        if event.order_id is not None:
            # A failed event flags its order (the rules' unfinished events).
            refresh_attention(event.order_id, lock=True)


def process_event(event: GatewayEvent, *, method: PaymentMethod | None = None) -> CallbackResponse:
    """
    Apply a stored event at most once and map the outcome to an HTTP answer.

    ``method`` is the event's payment method when the caller has just read it.
    """
    try:
        with transaction.atomic(), audit_context(channel=channel_or(Channel.GATEWAY)):
            if method is not None and method.pk == event.payment_method_id:
                row = _EVENT_LOCKED.instances(event.pk)[0]
                row.payment_method = method
            else:
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
            if parsed.fact is None:
                detail = parsed.ignore_reason or _(
                    "Event type %(type)s is not used by orderflow."
                ) % {"type": row.event_type}
                _finish(row, EventOutcome.IGNORED, detail)
                return CallbackResponse(200, {"status": "ignored", "reason": detail}, row)
            # Events, then orders: the order's row lock is taken after the event's.
            order = _find_order(method, parsed, lock=True)
            if order is None and not parsed.order_number:
                # Not ours: no order number, and no id this store has seen. Kept
                # under the payment's id in case a later callback ties it to one.
                detail = _(
                    "No order of this store knows this payment (no order number, no known "
                    "reference); kept in case a later event ties it to an order."
                )
                row.reference = next(iter(_references(parsed)), "")
                _finish(row, EventOutcome.IGNORED, detail, fields=("reference",))
                return CallbackResponse(200, {"status": "ignored", "reason": detail}, row)
            if order is None:
                detail = _("No order %(order)s (yet); the event can be replayed.") % {
                    "order": parsed.order_number
                }
                _finish(row, EventOutcome.UNMATCHED, detail)
                return CallbackResponse(404, {"error": detail}, row)
            if order.payment_method_id != method.pk:
                raise InvalidPaymentEvent(
                    _("Order %(order)s is not paid with %(method)s.")
                    % {"order": order.number, "method": method.code}
                )
            # apply_gateway_event saves the outcome and the attempt count together.
            # Any error rolls this whole transaction back (below).
            result = apply_gateway_event(order, parsed.fact, gateway_event=row, order_locked=True)
    except (InvalidPaymentEvent, MalformedCallback) as exc:
        _mark_after_rollback(event, EventOutcome.REJECTED, str(exc))
        if event.outcome != EventOutcome.REJECTED:
            return CallbackResponse(200, {"status": "duplicate"}, event)
        return _error(400, str(exc), event)
    except Exception as exc:
        logger.exception("Processing gateway event %s failed; stored for replay.", event.pk)
        _mark_after_rollback(event, EventOutcome.FAILED, f"{type(exc).__name__}: {exc}")
        if event.outcome in FINAL_OUTCOMES:
            # Already processed by an earlier delivery; this one changed nothing.
            return CallbackResponse(200, {"status": "duplicate"}, event)
        return _error(500, _("Processing failed; the event is stored and will be replayed."), event)

    if result.outcome == EventOutcome.APPLIED:
        _adopt_strays(row.payment_method, parsed)
        return CallbackResponse(
            200, {"status": "applied", "order_status": result.order.status}, row
        )
    if result.outcome == EventOutcome.DUPLICATE:
        return CallbackResponse(200, {"status": "duplicate"}, row)
    if result.outcome == EventOutcome.STALE:
        return CallbackResponse(200, {"status": "stale"}, row)
    if result.outcome == EventOutcome.CONFLICT:
        return CallbackResponse(200, {"status": "conflict", "reason": result.reason}, row)
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
    """
    Mark events that flag their order as seen by staff; return how many.

    Their orders stop needing attention unless another rule still holds; the
    stored attention of those orders is refreshed in the same transaction.
    """
    with transaction.atomic():
        rows = list(events.acknowledgeable().values_list("pk", "order_id"))
        count = GatewayEvent.objects.filter(
            pk__in=[pk for pk, _order in rows], acknowledged_at__isnull=True
        ).update(acknowledged_at=timezone.now(), acknowledged_by=user)
        order_ids = {order_id for _pk, order_id in rows if order_id is not None}
        if order_ids:
            # Events, then orders: the lock order of process_event.
            refresh_attention_of(order_ids, lock=True)
    return count
