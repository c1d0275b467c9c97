"""
The ``stripe`` gateway: Stripe's own events, verified with the official library.

Callbacks are Stripe event objects signed in the ``Stripe-Signature`` header
(``t=<unix seconds>,v1=<hex>[,v1=<hex>]``). What orderflow acts on:

===========================================  =============  =========================
Stripe event type                            fact           ledger reference
===========================================  =============  =========================
payment_intent.amount_capturable_updated     authorized     PaymentIntent id
payment_intent.succeeded                     captured       PaymentIntent id
payment_intent.payment_failed                declined       PaymentIntent id
payment_intent.canceled                      voided         PaymentIntent id
charge.refunded                              refunded       Refund id (``re_...``)
refund.created, refund.updated,              refunded       Refund id (``re_...``)
refund.failed, charge.refund.updated
===========================================  =============  =========================

Every other event type is stored and ignored. Amounts are whole minor units
of the object's currency (1500 JPY is ``1500``, 1.234 KWD is ``1234``).

A Stripe refund is counted once whichever channel reports it, because the
ledger reference is the refund's own id: a staff refund, ``charge.refunded``
and ``refund.updated`` for the same ``re_...`` are one ledger row. A callback
carries one fact, so ``charge.refunded`` reports only the most recent
succeeded or pending refund in the charge's ``refunds`` list; earlier refunds
are reported by their own ``refund.*`` events (since API version 2022-11-15
the list is often left out altogether, and the event is then ignored). A
refund that Stripe reports as pending is counted; if it later fails, the
ledger keeps it and staff have to correct the order.

The order is found by ``metadata.order_number``, else by the PaymentIntent id
recorded at checkout (``Order.gateway_reference``).

Staff captures, voids and refunds go through the library with the method's
API key and the payment request's idempotency key, so a repeated click moves
money once and an unanswered call can be asked again safely.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import stripe
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from orderflow.money import from_minor_units, to_minor_units
from payments.exceptions import GatewayError, GatewayNoAnswer
from payments.gateways.base import (
    MAX_EVENT_ID_LENGTH,
    MAX_EVENT_TYPE_LENGTH,
    MAX_ORDER_NUMBER_LENGTH,
    MAX_REFERENCE_LENGTH,
    FactKind,
    MalformedCallback,
    MoneyFact,
    OutboundRequest,
    OutboundResult,
    ParsedCallback,
    SignatureError,
    check_signature_time,
    checked_text,
    header_value,
    load_json_object,
    minor_units_amount,
    read_signature_header,
    shown,
)

SIGNATURE_HEADER = "Stripe-Signature"

PAYMENT_INTENT_EVENTS = {
    "payment_intent.amount_capturable_updated": FactKind.AUTHORIZED,
    "payment_intent.succeeded": FactKind.CAPTURED,
    "payment_intent.payment_failed": FactKind.DECLINED,
    "payment_intent.canceled": FactKind.VOIDED,
}
PAYMENT_INTENT_AMOUNT_FIELD = {
    FactKind.AUTHORIZED: "amount_capturable",
    FactKind.CAPTURED: "amount_received",
}
CHARGE_REFUNDED = "charge.refunded"
REFUND_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)
# A refund in one of these states has moved, or is moving, the money back.
# "failed", "canceled" and "requires_action" refunds are not counted.
COUNTED_REFUND_STATUSES = frozenset({"succeeded", "pending"})


# -- reading Stripe objects ---------------------------------------------------------------


def _text(
    obj: Mapping[str, Any], field: str, where: str, *, max_length: int = MAX_REFERENCE_LENGTH
) -> str:
    return checked_text(obj.get(field), f"{where}{field}", max_length=max_length)


def _optional_text(
    obj: Mapping[str, Any], field: str, where: str, *, max_length: int = MAX_REFERENCE_LENGTH
) -> str:
    return checked_text(obj.get(field), f"{where}{field}", max_length=max_length, required=False)


def _currency(obj: Mapping[str, Any], where: str) -> str:
    currency = _text(obj, "currency", where, max_length=32).upper()
    if len(currency) != 3 or not currency.isalpha() or not currency.isascii():
        raise MalformedCallback(f"currency {shown(currency)} is not a 3-letter ISO code")
    return currency


def _order_number(obj: Mapping[str, Any], where: str) -> str:
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise MalformedCallback(f"field {where}metadata must be an object")
    return _optional_text(
        metadata, "order_number", f"{where}metadata.", max_length=MAX_ORDER_NUMBER_LENGTH
    )


def _payment_intent_fact(
    kind: FactKind, obj: Mapping[str, Any], where: str
) -> tuple[MoneyFact | None, str]:
    """Return the fact and the PaymentIntent id of a ``payment_intent.*`` event."""
    intent_id = _text(obj, "id", where)
    currency = _currency(obj, where)
    amount: Decimal | None = None
    amount_field = PAYMENT_INTENT_AMOUNT_FIELD.get(kind)
    if amount_field:
        value = obj.get(amount_field)
        if value is None:
            raise MalformedCallback(f"missing field: {where}{amount_field}")
        if kind == FactKind.AUTHORIZED and value == 0:
            # Stripe also reports a hold going down to nothing: no authorization.
            return None, intent_id
        amount = minor_units_amount(value, currency, field=f"{where}{amount_field}")
    fact = MoneyFact(kind=kind, reference=intent_id, amount=amount, currency=currency)
    return fact, intent_id


def _refund_fact(
    refund: Mapping[str, Any], where: str, default_currency: str = ""
) -> MoneyFact | None:
    """Return the fact for one Stripe Refund object, or None when it moves no money."""
    status = _text(refund, "status", where)
    if status not in COUNTED_REFUND_STATUSES:
        return None
    refund_id = _text(refund, "id", where)
    currency = _currency(refund, where) if refund.get("currency") else default_currency
    if not currency:
        raise MalformedCallback(f"missing field: {where}currency")
    amount = minor_units_amount(refund.get("amount"), currency, field=f"{where}amount")
    return MoneyFact(kind=FactKind.REFUNDED, reference=refund_id, amount=amount, currency=currency)


def _latest_counted_refund(charge: Mapping[str, Any], where: str) -> Mapping[str, Any] | None:
    """Return the most recent succeeded or pending refund listed on a Charge."""
    refunds = charge.get("refunds")
    if refunds is None:
        return None
    items = refunds.get("data") if isinstance(refunds, dict) else None
    if not isinstance(items, list):
        raise MalformedCallback(f"field {where}refunds.data must be a list")
    latest: tuple[int, int] | None = None
    chosen: Mapping[str, Any] | None = None
    for position, item in enumerate(items):
        item_where = f"{where}refunds.data[{position}]."
        if not isinstance(item, dict):
            raise MalformedCallback(f"field {item_where[:-1]} must be an object")
        if _text(item, "status", item_where) not in COUNTED_REFUND_STATUSES:
            continue
        created = item.get("created")
        if isinstance(created, bool) or not isinstance(created, int):
            raise MalformedCallback(f"missing field: {item_where}created (unix seconds)")
        # Stripe lists the newest first: on a tie, the earlier item wins.
        key = (created, -position)
        if latest is None or key > latest:
            latest, chosen = key, item
    return chosen


# -- the adapter ------------------------------------------------------------------------


# A staff action waits on these calls: give up within seconds, not minutes
# (the library's default is 80 s, retried). Tests install their own client.
if stripe.default_http_client is None:
    stripe.default_http_client = stripe.RequestsClient(timeout=(5, 20))


class StripeGateway:
    key = "stripe"

    @sensitive_variables("secret", "header", "headers")
    def verify(self, *, body: bytes, headers: Mapping[str, str], secret: str) -> None:
        # The library's exceptions carry the whole header and payload: only
        # messages written here leave this method. The header is read strictly
        # first, so the library only ever compares ASCII hex digits.
        if not secret or not secret.strip():
            raise SignatureError("the payment method has no webhook secret")
        header = header_value(headers, SIGNATURE_HEADER)
        if not header:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        signature = read_signature_header(header)
        check_signature_time(signature.timestamp)
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureError("the body is not UTF-8, so its signature cannot match") from None
        # verify_header() is the check Webhook.construct_event() runs before it
        # reads the JSON. Called on its own, a signed but unreadable body
        # reaches parse() and is answered 400 naming the problem, not 401. The
        # time window was checked above, both ways, on orderflow's clock.
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
        except stripe.SignatureVerificationError:
            raise SignatureError("the signature does not match") from None

    def parse(self, body: bytes) -> ParsedCallback:
        data = load_json_object(body)
        event_id = _text(data, "id", "", max_length=MAX_EVENT_ID_LENGTH)
        event_type = _text(data, "type", "", max_length=MAX_EVENT_TYPE_LENGTH)
        handled = (
            event_type in PAYMENT_INTENT_EVENTS
            or event_type == CHARGE_REFUNDED
            or event_type in REFUND_EVENTS
        )
        if not handled:
            return ParsedCallback(event_id=event_id, event_type=event_type, fact=None)
        payload = data.get("data")
        obj = payload.get("object") if isinstance(payload, dict) else None
        if not isinstance(obj, dict):
            raise MalformedCallback("missing field: data.object")
        where = "data.object."

        if event_type in PAYMENT_INTENT_EVENTS:
            fact, intent_id = _payment_intent_fact(PAYMENT_INTENT_EVENTS[event_type], obj, where)
        else:
            intent_id = _optional_text(obj, "payment_intent", where)
            if event_type == CHARGE_REFUNDED:
                charge_currency = _currency(obj, where)
                refund = _latest_counted_refund(obj, where)
                fact = (
                    _refund_fact(refund, f"{where}refunds.data[].", charge_currency)
                    if refund is not None
                    else None
                )
            else:
                fact = _refund_fact(obj, where)
        return ParsedCallback(
            event_id=event_id,
            event_type=event_type,
            fact=fact,
            order_number=_order_number(obj, where),
            order_reference=intent_id,
            ignore_reason=""
            if fact is not None
            else "Nothing to record: no succeeded or pending refund, or no amount on hold.",
        )

    # -- outbound, through the Stripe API ---------------------------------------------------

    @sensitive_variables("credentials", "params")
    def _call(
        self, action: str, credentials: str, call: Callable[..., Any], *args: Any, **params: Any
    ) -> dict[str, Any]:
        """Call the library with the method's key; return the answer as a dict."""
        if not credentials or not credentials.strip():
            raise GatewayError(
                _("No API key configured for this Stripe payment method; cannot %(action)s.")
                % {"action": action}
            )
        try:
            answer = call(*args, api_key=credentials.strip(), **params)
        except stripe.StripeError as exc:
            raise _gateway_error(action, exc, credentials) from None
        return answer.to_dict()

    @sensitive_variables("credentials")
    def capture(self, request: OutboundRequest, *, credentials: str) -> OutboundResult:
        intent = self._call(
            "capture",
            credentials,
            stripe.PaymentIntent.capture,
            request.checkout_reference,
            amount_to_capture=_minor_units(request),
            idempotency_key=request.idempotency_key,
        )
        received = _answer_amount(intent, "amount_received", request)
        return OutboundResult(reference=_answer_id(intent), amount=received)

    @sensitive_variables("credentials")
    def void(self, request: OutboundRequest, *, credentials: str) -> OutboundResult:
        intent = self._call(
            "void",
            credentials,
            stripe.PaymentIntent.cancel,
            request.checkout_reference,
            idempotency_key=request.idempotency_key,
        )
        # The hold released is the amount orderflow asked to void.
        return OutboundResult(reference=_answer_id(intent), amount=request.amount)

    @sensitive_variables("credentials")
    def refund(self, request: OutboundRequest, *, credentials: str) -> OutboundResult:
        refund = self._call(
            "refund",
            credentials,
            stripe.Refund.create,
            payment_intent=request.checkout_reference,
            amount=_minor_units(request),
            # Stripe's refund.* callbacks then name the order directly.
            metadata={"order_number": request.order_number},
            idempotency_key=request.idempotency_key,
        )
        status = refund.get("status")
        if status not in COUNTED_REFUND_STATUSES:
            # Not recorded now; Stripe's callback records it if it completes.
            raise GatewayError(
                _("Stripe did not complete the refund (status: %(status)s).")
                % {"status": status or "unknown"}
            )
        amount = _answer_amount(refund, "amount", request)
        return OutboundResult(reference=_answer_id(refund), amount=amount)


def _minor_units(request: OutboundRequest) -> int:
    try:
        return to_minor_units(request.amount, request.currency)
    except ValueError:
        raise GatewayError(
            _("%(amount)s has more decimals than %(currency)s allows.")
            % {"amount": request.amount, "currency": request.currency}
        ) from None


def _answer_id(answer: Mapping[str, Any]) -> str:
    reference = answer.get("id")
    if not isinstance(reference, str) or not reference:
        raise GatewayError(_("Stripe's answer has no id."))
    return reference


def _answer_amount(answer: Mapping[str, Any], field: str, request: OutboundRequest) -> Decimal:
    value = answer.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise GatewayError(_("Stripe's answer has no %(field)s.") % {"field": field})
    currency = answer.get("currency") or request.currency
    return from_minor_units(value, str(currency).upper())


@sensitive_variables("credentials")
def _gateway_error(action: str, exc: stripe.StripeError, credentials: str) -> GatewayError:
    """Return what a library error means: a refusal (no money moved) or no answer."""
    if isinstance(exc, stripe.IdempotencyError) or exc.http_status == 409:
        # A conflict over the idempotency key: another request with the same
        # key is still in progress (409, which the library raises as an
        # APIError), or the key was used before (IdempotencyError). That other
        # request decides whether money moves, so this is not a refusal.
        return GatewayNoAnswer(
            _(
                "Stripe has another request with the same idempotency key, still in "
                "progress or already made; the %(action)s may have gone through. It "
                "will be asked again with the same key."
            )
            % {"action": action}
        )
    if isinstance(exc, stripe.APIConnectionError) or (
        isinstance(exc, stripe.APIError) and (exc.http_status or 500) >= 500
    ):
        # A timeout or a server error (Stripe documents 5xx results as
        # indeterminate) may come after Stripe acted: not a refusal. The
        # same idempotency key asked again later gives Stripe's real answer.
        return GatewayNoAnswer(
            _(
                "Stripe did not answer the %(action)s; it may have gone through. "
                "It will be asked again with the same idempotency key."
            )
            % {"action": action}
        )
    return GatewayError(_error_message(action, exc, credentials))


@sensitive_variables("credentials")
def _error_message(action: str, exc: stripe.StripeError, credentials: str) -> str:
    """Return a message staff may read: Stripe's user-facing text, never the key."""
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return _("Stripe refused the API key configured for this payment method.")
    if isinstance(exc, stripe.RateLimitError):
        return _("Stripe is busy; try the %(action)s again.") % {"action": action}
    message = (exc.user_message or "").strip()
    if credentials:
        message = message.replace(credentials.strip(), "[API key]")
    if not message:
        return _("Stripe refused the %(action)s.") % {"action": action}
    return _("Stripe refused the %(action)s: %(message)s") % {"action": action, "message": message}
