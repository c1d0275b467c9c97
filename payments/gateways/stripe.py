"""
The ``stripe`` gateway: Stripe's own events, verified with the official library.

Callbacks are Stripe event objects signed in the ``Stripe-Signature`` header
(``t=<unix seconds>,v1=<hex>[,v1=<hex>]``). What each event means for an
order is read in ``payments.gateways.stripe_facts`` (the event-to-fact
table); amounts use Stripe's own minor units (``stripe_money``), not ISO
4217: MGA has no decimals at Stripe, ISK two, and three-decimal currencies
go in multiples of 10 thousandths.

The order is found by ``metadata.order_number`` on the Stripe object, or by
its PaymentIntent, or by any refund or dispute id the ledger already holds.
A checkout is named by its PaymentIntent id only
(``checkout_reference_problem``), so one payment never has two names.

Staff captures, voids and refunds go through the library with the method's
API key and the payment request's idempotency key, so a repeated click moves
money once and an unanswered call can be asked again safely.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import stripe
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from payments.exceptions import GatewayError, GatewayNoAnswer
from payments.gateways.base import (
    OutboundRequest,
    OutboundResult,
    ParsedCallback,
    SignatureError,
    check_signature_time,
    header_value,
    load_json_object,
    read_signature_header,
)
from payments.gateways.stripe_facts import COUNTED_REFUND_STATUSES, read_event
from payments.gateways.stripe_money import UnsendableAmount, from_stripe_units, to_stripe_units

SIGNATURE_HEADER = "Stripe-Signature"

_PAYMENT_INTENT_ID = re.compile(r"pi_[A-Za-z0-9]{1,250}")


# -- the adapter ------------------------------------------------------------------------


# A staff action waits on these calls: give up within seconds, not minutes
# (the library's default is 80 s, retried). Tests install their own client.
if stripe.default_http_client is None:
    stripe.default_http_client = stripe.RequestsClient(timeout=(5, 20))


class StripeGateway:
    key = "stripe"
    needs_credentials = True
    """Captures, voids and refunds need the method's API key."""

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
        return read_event(load_json_object(body))

    def checkout_reference_problem(self, reference: str) -> str | None:
        if _PAYMENT_INTENT_ID.fullmatch(reference):
            return None
        return _(
            "%(reference)r is not a Stripe PaymentIntent id (pi_...). A Stripe payment is "
            "recorded under its PaymentIntent; a charge id (ch_...) or any other id would "
            "give the same payment a second name."
        ) % {"reference": reference}

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
    """Return the amount in Stripe's minor units; nothing is sent when it cannot be exact."""
    try:
        return to_stripe_units(request.amount, request.currency)
    except UnsendableAmount as exc:
        raise GatewayError(str(exc)) from None


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
    return from_stripe_units(value, str(currency).upper())


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
