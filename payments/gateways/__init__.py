"""Gateway adapters (one module per provider) and the types they share."""

from payments.gateways.base import (
    CheckoutOutcome,
    FactKind,
    MoneyFact,
    PaymentResult,
)

__all__ = ["CheckoutOutcome", "FactKind", "MoneyFact", "PaymentResult"]
