"""Gateway adapters (one module per provider) and the types they share."""

from payments.gateways.base import (
    CheckoutOutcome,
    EventKind,
    PaymentEvent,
    PaymentResult,
)

__all__ = ["CheckoutOutcome", "EventKind", "PaymentEvent", "PaymentResult"]
