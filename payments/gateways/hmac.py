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

from payments.exceptions import GatewayError
from payments.gateways.base import (
    SIGNATURE_TOLERANCE_SECONDS,
    EventKind,
    MalformedCallback,
    OutboundRequest,
    OutboundResult,
    ParsedCallback,
    PaymentEvent,
    SignatureError,
    header_value,
    major_units_amount,
)

SIGNATURE_HEADER = "X-Orderflow-Signature"

EVENT_TYPES = {
    "payment.authorized": EventKind.AUTHORIZED,
    "payment.captured": EventKind.CAPTURED,
    "payment.declined": EventKind.DECLINED,
    "payment.voided": EventKind.VOIDED,
    "payment.refunded": EventKind.REFUNDED,
}
MONEY_TYPES = {"payment.captured", "payment.refunded"}


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


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

    def verify(self, *, body: bytes, headers: Mapping[str, str], secret: str) -> None:
        if not secret:
            raise SignatureError("the payment method has no webhook secret")
        header = header_value(headers, SIGNATURE_HEADER)
        if not header:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        timestamp: int | None = None
        candidates: list[str] = []
        for item in header.split(","):
            name, _, value = item.strip().partition("=")
            if name == "t":
                try:
                    timestamp = int(value)
                except ValueError:
                    raise SignatureError("the signature timestamp is not a number") from None
            elif name == "v1" and value:
                candidates.append(value)
        if timestamp is None:
            raise SignatureError("the signature has no timestamp")
        if not candidates:
            raise SignatureError("the signature has no v1 value")
        if abs(time.time() - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
            raise SignatureError("the signature timestamp is more than 300 seconds away")
        expected = compute_signature(secret, timestamp, body)
        # Compare every candidate, so timing does not tell which one matched.
        matches = [hmac.compare_digest(expected, candidate) for candidate in candidates]
        if not any(matches):
            raise SignatureError("the signature does not match")

    def parse(self, body: bytes) -> ParsedCallback:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise MalformedCallback("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise MalformedCallback("the body must be a JSON object")

        def text(field: str, *, required: bool = True) -> str:
            value = data.get(field)
            if value is None or value == "":
                if required:
                    raise MalformedCallback(f"missing field: {field}")
                return ""
            if not isinstance(value, str):
                raise MalformedCallback(f"field {field} must be a string")
            return value.strip()

        event_id = text("id")
        event_type = text("type")
        if event_type not in EVENT_TYPES:
            raise MalformedCallback(
                f"unknown type {event_type!r}; expected one of: {', '.join(EVENT_TYPES)}"
            )
        order_number = text("order")
        currency = text("currency").upper()
        if len(currency) != 3 or not currency.isalpha():
            raise MalformedCallback(f"currency {currency!r} is not a 3-letter ISO code")
        if not isinstance(data.get("created"), int) or isinstance(data.get("created"), bool):
            raise MalformedCallback("missing field: created (unix seconds)")
        amount = None
        if event_type in MONEY_TYPES or data.get("amount") not in (None, ""):
            amount = major_units_amount(data.get("amount"), currency)
        transaction = text("transaction", required=event_type in MONEY_TYPES)
        event = PaymentEvent(
            kind=EVENT_TYPES[event_type],
            reference=transaction or event_id,
            amount=amount,
            currency=currency,
        )
        return ParsedCallback(
            event_id=event_id, event_type=event_type, event=event, order_number=order_number
        )

    # -- outbound, simulated ----------------------------------------------------------

    def _simulate(self, action: str, request: OutboundRequest) -> OutboundResult:
        outcome = getattr(settings, "ORDERFLOW_HMAC_SIMULATED_OUTCOME", "success")
        if outcome == "decline":
            raise GatewayError(f"The test gateway declined the {action}.")
        if outcome == "error":
            raise GatewayError(f"The test gateway did not answer the {action}; try again.")
        # Same idempotency key, same reference: a retried request is one movement.
        digest = hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:20]
        return OutboundResult(reference=f"sim_{action}_{digest}", amount=request.amount)

    def capture(self, request: OutboundRequest, *, credentials: str) -> OutboundResult:
        return self._simulate("capture", request)

    def void(self, request: OutboundRequest, *, credentials: str) -> OutboundResult:
        return self._simulate("void", request)

    def refund(self, request: OutboundRequest, *, credentials: str) -> OutboundResult:
        return self._simulate("refund", request)
