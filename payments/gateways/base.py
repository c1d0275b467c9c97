"""
The small, frozen vocabulary shared by gateway adapters and services.

Adapters know a provider's format; they speak to the rest of orderflow only
in these types and never touch the ORM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Protocol

from orderflow.money import currency_exponent, decimals_of, from_minor_units


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


# -- callbacks (inbound) --------------------------------------------------------

SIGNATURE_TOLERANCE_SECONDS = 300
"""How far a signature's timestamp may be from now, either way."""


def header_value(headers: Mapping[str, str], name: str) -> str:
    """Return a header by case-insensitive name ('' when absent)."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), "")


class SignatureError(Exception):
    """The callback's signature is missing, wrong or stale. Never echo the header."""


class MalformedCallback(Exception):
    """The callback is signed but unusable; the message names the problem."""


@dataclass(frozen=True)
class ParsedCallback:
    """A verified callback, in orderflow's terms."""

    event_id: str
    event_type: str
    event: PaymentEvent | None
    """The money fact; None for an event type orderflow does not act on."""
    order_number: str = ""
    order_reference: str = ""
    """The gateway's id for the checkout, to find the order without a number."""
    ignore_reason: str = ""
    """Why ``event`` is None, when the type is one orderflow knows."""


# -- staff actions (outbound) ------------------------------------------------------


@dataclass(frozen=True)
class OutboundRequest:
    """A capture, void or refund asked of the gateway."""

    order_number: str
    checkout_reference: str
    """The gateway's id for the checkout (authorization / PaymentIntent)."""
    amount: Decimal
    currency: str
    idempotency_key: str
    """Same key, same answer: a double click never moves money twice."""


@dataclass(frozen=True)
class OutboundResult:
    """The gateway's answer to a capture, void or refund."""

    reference: str
    """The gateway's id for this money movement (the ledger reference)."""
    amount: Decimal


class Gateway(Protocol):
    """What an adapter provides. Adapters never touch the ORM."""

    key: str

    def verify(self, *, body: bytes, headers: Mapping[str, str], secret: str) -> None:
        """Raise SignatureError unless the body was signed with ``secret`` recently."""

    def parse(self, body: bytes) -> ParsedCallback:
        """Return the callback in orderflow's terms or raise MalformedCallback."""

    def capture(self, request: OutboundRequest, *, credentials: str) -> OutboundResult:
        """Capture authorized money; raise GatewayError when refused."""

    def void(self, request: OutboundRequest, *, credentials: str) -> OutboundResult:
        """Release an authorization; raise GatewayError when refused."""

    def refund(self, request: OutboundRequest, *, credentials: str) -> OutboundResult:
        """Give captured money back; raise GatewayError when refused."""


# -- money in callbacks ------------------------------------------------------------


def minor_units_amount(value: object, currency: str, *, field: str = "amount") -> Decimal:
    """Parse a positive whole number of minor units (Stripe's format) into an amount."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedCallback(f"{field} {value!r} is not a whole number of minor units")
    if value <= 0:
        raise MalformedCallback(f"{field} must be greater than zero")
    return from_minor_units(value, currency)


def major_units_amount(value: object, currency: str, *, field: str = "amount") -> Decimal:
    """Parse a decimal string such as "25.00" in the currency's major units."""
    if not isinstance(value, str) or not value.strip():
        raise MalformedCallback(f'{field} must be a decimal string such as "25.00"')
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise MalformedCallback(f"{field} {value!r} is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise MalformedCallback(f"{field} must be greater than zero")
    if decimals_of(amount) > currency_exponent(currency):
        raise MalformedCallback(f"{field} {value} has more decimals than {currency} allows")
    return amount
