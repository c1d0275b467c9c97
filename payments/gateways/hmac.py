"""
The built-in ``hmac`` gateway: orderflow's own callback format.

Body (JSON)::

    {"id": "evt_123", "type": "payment.captured", "order": "A1001",
     "amount": "25.00", "currency": "USD", "transaction": "tx_9",
     "created": 1764000000}

Header ``X-Orderflow-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]``, where
each ``v1`` is the HMAC-SHA256 of ``"<t>.<raw body>"`` keyed with the
method's webhook secret. Two ``v1`` values let a sender sign with the old and
the new secret while a rotation is under way.

Outbound calls (capture, void, refund) are simulated offline so that the demo
and the tests need no network; ``ORDERFLOW_HMAC_SIMULATED_OUTCOME`` can make
them fail (``decline`` or ``error``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

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
    major_units_amount,
    read_signature_header,
    shown,
)

SIGNATURE_HEADER = "X-Orderflow-Signature"

EVENT_TYPES = {
    "payment.authorized": FactKind.AUTHORIZED,
    "payment.captured": FactKind.CAPTURED,
    "payment.declined": FactKind.DECLINED,
    "payment.voided": FactKind.VOIDED,
    "payment.refunded": FactKind.REFUNDED,
    # "transaction" names the refund that failed.
    "payment.refund_failed": FactKind.REFUND_FAILED,
    # "transaction" names the dispute; "amount" is what was withdrawn.
    "payment.disputed": FactKind.DISPUTE_OPENED,
    # "amount", when given, is what was reinstated.
    "payment.dispute_won": FactKind.DISPUTE_WON,
    "payment.dispute_lost": FactKind.DISPUTE_LOST,
}
MONEY_TYPES = {"payment.captured", "payment.refunded", "payment.disputed"}
"""Types that need an amount."""
REFERENCED_TYPES = MONEY_TYPES | {
    "payment.refund_failed",
    "payment.dispute_won",
    "payment.dispute_lost",
}
"""Types that need a transaction (the movement, refund or dispute they are about)."""


@sensitive_variables("secret")
def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@sensitive_variables("secret", "secrets")
def sign(body: bytes, secret: str | list[str], timestamp: int | None = None) -> str:
    """Return the signature header value for ``body`` (one ``v1`` per secret)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    secrets = [secret] if isinstance(secret, str) else list(secret)
    parts = [f"t={ts}"] + [f"v1={compute_signature(s, ts, body)}" for s in secrets]
    return ",".join(parts)


def build_body(
    *,
    event_id: str,
    event_type: str,
    order: str,
    currency: str,
    amount: Decimal | str | None = None,
    transaction: str = "",
    created: int | None = None,
) -> bytes:
    """Return a callback body in this gateway's format (for tests, demo, simulator)."""
    payload: dict[str, Any] = {
        "id": event_id,
        "type": event_type,
        "order": order,
        "currency": currency,
        "created": int(time.time()) if created is None else created,
    }
    if amount is not None:
        payload["amount"] = str(amount)
    if transaction:
        payload["transaction"] = transaction
    return json.dumps(payload, separators=(",", ":")).encode()


class HmacGateway:
    key = "hmac"

    @sensitive_variables("secret", "expected", "header", "headers")
    def verify(self, *, body: bytes, headers: Mapping[str, str], secret: str) -> None:
        if not secret:
            raise SignatureError("the payment method has no webhook secret")
        header = header_value(headers, SIGNATURE_HEADER)
        if not header:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        signature = read_signature_header(header)
        check_signature_time(signature.timestamp)
        expected = compute_signature(secret, signature.timestamp, body)
        # Compare every candidate, so timing does not tell which one matched.
        matches = [hmac.compare_digest(expected, candidate) for candidate in signature.signatures]
        if not any(matches):
            raise SignatureError("the signature does not match")

    def parse(self, body: bytes) -> ParsedCallback:
        data = load_json_object(body)
        event_id = checked_text(data.get("id"), "id", max_length=MAX_EVENT_ID_LENGTH)
        event_type = checked_text(data.get("type"), "type", max_length=MAX_EVENT_TYPE_LENGTH)
        if event_type not in EVENT_TYPES:
            raise MalformedCallback(
                f"unknown type {shown(event_type)}; expected one of: {', '.join(EVENT_TYPES)}"
            )
        order_number = checked_text(data.get("order"), "order", max_length=MAX_ORDER_NUMBER_LENGTH)
        currency = checked_text(data.get("currency"), "currency", max_length=32).upper()
        if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
            raise MalformedCallback(f"currency {shown(currency)} is not a 3-letter ISO code")
        created = data.get("created")
        if created is None:
            raise MalformedCallback("missing field: created (unix seconds)")
        if isinstance(created, bool) or not isinstance(created, int) or not 0 < created < 2**40:
            raise MalformedCallback("field created must be a whole number of unix seconds")
        amount = None
        if event_type in MONEY_TYPES or data.get("amount") not in (None, ""):
            amount = major_units_amount(data.get("amount"), currency)
        transaction = checked_text(
            data.get("transaction"),
            "transaction",
            max_length=MAX_REFERENCE_LENGTH,
            required=event_type in REFERENCED_TYPES,
        )
        fact = MoneyFact(
            kind=EVENT_TYPES[event_type],
            reference=transaction or event_id,
            amount=amount,
            currency=currency,
        )
        return ParsedCallback(
            event_id=event_id, event_type=event_type, fact=fact, order_number=order_number
        )

    def checkout_reference_problem(self, reference: str) -> str | None:
        # The sender chooses its own transaction ids: any non-blank text names one.
        return None

    # -- outbound, simulated ----------------------------------------------------------

    def _simulate(self, action: str, request: OutboundRequest) -> OutboundResult:
        outcome = getattr(settings, "ORDERFLOW_HMAC_SIMULATED_OUTCOME", "success")
        if outcome == "decline":
            raise GatewayError(f"The test gateway declined the {action}.")
        if outcome == "error":
            raise GatewayNoAnswer(
                f"The test gateway did not answer the {action}; it may have gone through."
            )
        # Same idempotency key, same reference: a retried request is one movement.
        digest = hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:20]
        return OutboundResult(reference=f"sim_{action}_{digest}", amount=request.amount)

    def capture(self, request: OutboundRequest, *, credentials: str) -> OutboundResult:
        return self._simulate("capture", request)

    def void(self, request: OutboundRequest, *, credentials: str) -> OutboundResult:
        return self._simulate("void", request)

    def refund(self, request: OutboundRequest, *, credentials: str) -> OutboundResult:
        return self._simulate("refund", request)
