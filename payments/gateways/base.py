"""
The small, frozen vocabulary shared by gateway adapters and services.

Adapters know a provider's format; they speak to the rest of orderflow only
in these types and never touch the ORM.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class CheckoutOutcome(StrEnum):
    """A gateway's synchronous answer at checkout."""

    PENDING = "pending"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    DECLINED = "declined"


class EventKind(StrEnum):
    """A fact a gateway reports about an order's money."""

    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    DECLINED = "declined"
    VOIDED = "voided"
    REFUNDED = "refunded"


AMOUNT_REQUIRED = frozenset({EventKind.CAPTURED, EventKind.REFUNDED})


@dataclass(frozen=True)
class PaymentResult:
    """The gateway's answer at checkout, passed to ``place_order(initial=...)``."""

    outcome: CheckoutOutcome | str
    amount: Decimal | None = None
    reference: str = ""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "outcome", CheckoutOutcome(self.outcome))
        except ValueError:
            allowed = ", ".join(o.value for o in CheckoutOutcome)
            raise ValueError(
                f"Unknown checkout outcome {self.outcome!r}; expected one of: {allowed}."
            ) from None
        if self.amount is not None:
            object.__setattr__(self, "amount", Decimal(str(self.amount)))


@dataclass(frozen=True)
class PaymentEvent:
    """
    One money fact about an order, whichever channel reports it.

    ``reference`` is the gateway's id for that money movement; it makes the
    fact idempotent. ``amount`` is required for captures and refunds.
    """

    kind: EventKind | str
    reference: str
    amount: Decimal | None = None
    currency: str = ""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", EventKind(self.kind))
        except ValueError:
            allowed = ", ".join(k.value for k in EventKind)
            raise ValueError(f"Unknown event {self.kind!r}; expected one of: {allowed}.") from None
        if self.amount is not None:
            object.__setattr__(self, "amount", Decimal(str(self.amount)))
