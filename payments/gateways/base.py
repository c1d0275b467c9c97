"""
The small, frozen vocabulary shared by gateway adapters and services.

Adapters know a provider's format; they speak to the rest of orderflow only
in these types and never touch the ORM.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from orderflow.money import currency_exponent, decimals_of, from_minor_units


class CheckoutOutcome(StrEnum):
    """A gateway's synchronous answer at checkout."""

    PENDING = "pending"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    DECLINED = "declined"


class FactKind(StrEnum):
    """A fact a gateway reports about an order's money."""

    AUTHORIZED = "authorized"
    """The gateway holds the money (reference: the payment, e.g. a PaymentIntent)."""
    CAPTURED = "captured"
    """Money was taken (amount; reference: the payment)."""
    DECLINED = "declined"
    """The gateway refused an attempt; the customer may still retry and pay."""
    VOIDED = "voided"
    """The gateway cancelled the payment: an authorization released, or a
    checkout abandoned before any authorization."""
    REFUNDED = "refunded"
    """Money went back to the customer (amount; reference: the refund)."""
    REFUND_FAILED = "refund_failed"
    """A refund reported earlier failed and its money came back (reference: the refund)."""
    DISPUTE_OPENED = "dispute_opened"
    """A customer disputed the payment (reference: the dispute); no money moves yet."""
    DISPUTE_FUNDS_WITHDRAWN = "dispute_funds_withdrawn"
    """The gateway took the disputed money from the store (amount; reference: the dispute)."""
    DISPUTE_FUNDS_REINSTATED = "dispute_funds_reinstated"
    """The gateway gave the disputed money back (amount; reference: the dispute)."""
    DISPUTE_WON = "dispute_won"
    """The dispute closed in the store's favour (an amount, if given, was reinstated)."""
    DISPUTE_LOST = "dispute_lost"
    """The dispute closed in the customer's favour; the withdrawn money is gone."""


AMOUNT_REQUIRED = frozenset(
    {
        FactKind.CAPTURED,
        FactKind.REFUNDED,
        FactKind.DISPUTE_FUNDS_WITHDRAWN,
        FactKind.DISPUTE_FUNDS_REINSTATED,
    }
)


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
class MoneyFact:
    """
    One money fact about an order, whichever channel reports it.

    ``reference`` is the gateway's id for that money movement; it makes the
    fact idempotent. ``amount`` is required for captures and refunds.
    """

    kind: FactKind | str
    reference: str
    amount: Decimal | None = None
    currency: str = ""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", FactKind(self.kind))
        except ValueError:
            allowed = ", ".join(k.value for k in FactKind)
            raise ValueError(f"Unknown event {self.kind!r}; expected one of: {allowed}.") from None
        if self.amount is not None:
            object.__setattr__(self, "amount", Decimal(str(self.amount)))


# -- callbacks (inbound) --------------------------------------------------------

SIGNATURE_TOLERANCE_SECONDS = 300
"""How far a signature's timestamp may be from now, either way."""

# Column sizes of what a callback's fields are stored in (payments.models,
# orders.models): a longer value is refused before it reaches the database.
MAX_EVENT_ID_LENGTH = 255
MAX_EVENT_TYPE_LENGTH = 100
MAX_REFERENCE_LENGTH = 255
MAX_ORDER_NUMBER_LENGTH = 64

MAX_SIGNATURE_HEADER_LENGTH = 2048
"""Longer than any real header (a timestamp and a few signatures)."""
MAX_SIGNATURES = 8
"""How many signatures of one scheme a header may carry (secret rotation needs 2)."""

_HEADER_ITEM = re.compile(r"([a-z][a-z0-9]{0,15})=([A-Za-z0-9_]{1,256})")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


def now() -> float:
    """Return the current Unix time; the signature checks read the clock here."""
    return time.time()


def header_value(headers: Mapping[str, str], name: str) -> str:
    """Return a header by case-insensitive name ('' when absent)."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), "")


class SignatureError(Exception):
    """The callback's signature is missing, wrong or stale. Never echo the header."""


class MalformedCallback(Exception):
    """The callback is signed but unusable; the message names the problem."""


@dataclass(frozen=True)
class SignatureHeader:
    """A signature header read strictly: ``t=<unix seconds>,v1=<hex>[,v1=<hex>]``."""

    timestamp: int
    signatures: tuple[str, ...]


def read_signature_header(header: str, *, scheme: str = "v1") -> SignatureHeader:
    """
    Parse a ``t=...,v1=...`` header, or raise SignatureError.

    Every byte is checked before anything is compared or converted: printable
    ASCII, a bounded length, exactly one timestamp of ASCII digits, and
    signatures of the given scheme that are 64 lowercase hex digits. Items of
    other schemes (Stripe's ``v0``) must be well formed and are otherwise
    left alone.
    """
    if not header:
        raise SignatureError("the signature header is empty")
    if len(header) > MAX_SIGNATURE_HEADER_LENGTH:
        raise SignatureError("the signature header is too long")
    if not header.isascii() or not header.isprintable():
        raise SignatureError("the signature header has characters other than printable ASCII")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        match = _HEADER_ITEM.fullmatch(item.strip())
        if match is None:
            raise SignatureError("the signature header is not a list of name=value items")
        name, value = match.groups()
        if name == "t":
            timestamps.append(value)
        elif name == scheme:
            if not _HEX_SHA256.fullmatch(value):
                raise SignatureError(f"a {scheme} signature is not 64 hex digits")
            signatures.append(value)
    if not timestamps:
        raise SignatureError("the signature has no timestamp")
    if len(timestamps) > 1:
        raise SignatureError("the signature has more than one timestamp")
    if not _TIMESTAMP.fullmatch(timestamps[0]):
        raise SignatureError("the signature timestamp is not a number of seconds")
    if not signatures:
        raise SignatureError(f"the signature has no {scheme} value")
    if len(signatures) > MAX_SIGNATURES:
        raise SignatureError(f"the signature has more than {MAX_SIGNATURES} {scheme} values")
    return SignatureHeader(int(timestamps[0]), tuple(signatures))


def check_signature_time(timestamp: int) -> None:
    """Raise SignatureError when ``timestamp`` is more than the tolerance away from now."""
    current = now()
    if timestamp > current + SIGNATURE_TOLERANCE_SECONDS:
        raise SignatureError("the signature timestamp is more than 300 seconds ahead")
    if timestamp < current - SIGNATURE_TOLERANCE_SECONDS:
        raise SignatureError("the signature timestamp is more than 300 seconds old")


# -- signed bodies -------------------------------------------------------------------

MAX_INTEGER_DIGITS = 18
"""No number in a callback needs more; longer ones are refused before conversion."""


def shown(value: object, limit: int = 40) -> str:
    """Return ``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedCallback(f"the key {shown(key)} appears twice in one JSON object")
        result[key] = value
    return result


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise MalformedCallback(f"a number has more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _no_constant(name: str) -> None:
    raise MalformedCallback(f"{name} is not a JSON number")


def load_json_object(body: bytes) -> dict[str, Any]:
    """
    Decode a callback body as one strict JSON object, or raise MalformedCallback.

    UTF-8 only (RFC 8259), no duplicate keys, no NaN or Infinity, no integer
    longer than MAX_INTEGER_DIGITS, and no nesting deeper than Python can
    parse; decimals are read as Decimal, never as floats.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedCallback("the body is not UTF-8 text") from None
    try:
        data = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_int=_bounded_int,
            parse_float=Decimal,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise MalformedCallback(f"the body is not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise MalformedCallback("the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise MalformedCallback("the body must be a JSON object")
    return data


def checked_text(value: object, field: str, *, max_length: int, required: bool = True) -> str:
    """
    Return a string field stripped of surrounding spaces, or raise MalformedCallback.

    Control characters (NUL included) are refused, and so is anything longer
    than the column that stores it.
    """
    if value is None or value == "":
        if required:
            raise MalformedCallback(f"missing field: {field}")
        return ""
    if not isinstance(value, str):
        raise MalformedCallback(f"field {field} must be a string")
    text = value.strip()
    if not text and required:
        raise MalformedCallback(f"missing field: {field}")
    if len(text) > max_length:
        raise MalformedCallback(f"field {field} is longer than {max_length} characters")
    if any(unicodedata.category(char) in _UNSAFE_CATEGORIES for char in text):
        raise MalformedCallback(f"field {field} contains control characters")
    return text


# Control characters, unassigned code points and lone surrogates.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Cn"})


@dataclass(frozen=True)
class ParsedCallback:
    """A verified callback, in orderflow's terms."""

    event_id: str
    event_type: str
    fact: MoneyFact | None
    """The money fact; None for an event type orderflow does not act on."""
    order_number: str = ""
    order_reference: str = ""
    """The gateway's canonical id for the payment (Stripe: the PaymentIntent)."""
    references: tuple[str, ...] = ()
    """Other gateway ids the callback names for the same payment (a charge, a
    refund): any of them already in the ledger finds the order."""
    ignore_reason: str = ""
    """Why ``fact`` is None, when the type is one orderflow knows."""


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
    # An adapter whose outbound calls need the method's API key sets this to
    # True, so the admin says the key is missing instead of offering a call
    # that can only fail. Read with getattr: adapters may leave it out.
    needs_credentials: bool

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

    def checkout_reference_problem(self, reference: str) -> str | None:
        """
        Say why ``reference`` cannot name a checkout's payment (None when it can).

        The reference given at checkout becomes the order's name for the
        payment; an id of another kind (a Stripe charge instead of its
        PaymentIntent) would give the same payment a second name.
        """


# -- money in callbacks ------------------------------------------------------------

MAX_AMOUNT_DIGITS = 11
"""Whole units an amount may have (below orderflow.money.MAX_AMOUNT, 100 billion)."""

_MAJOR_UNITS = re.compile(rf"(0|[1-9][0-9]{{0,{MAX_AMOUNT_DIGITS - 1}}})(\.[0-9]{{1,3}})?")


def minor_units_amount(
    value: object, currency: str, *, field: str = "amount", exponent: int | None = None
) -> Decimal:
    """
    Parse a positive whole number of minor units into an amount.

    ``exponent`` is how many decimals the gateway counts for the currency;
    by default the ISO 4217 exponent (a gateway with its own table, such as
    Stripe, passes its own).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedCallback(f"{field} {shown(value)} is not a whole number of minor units")
    if value <= 0:
        raise MalformedCallback(f"{field} must be greater than zero")
    if exponent is None:
        amount = from_minor_units(value, currency)
    else:
        amount = Decimal(value).scaleb(-exponent)
    if amount >= Decimal(10) ** MAX_AMOUNT_DIGITS:
        raise MalformedCallback(f"{field} {value} is too large")
    return amount


def major_units_amount(value: object, currency: str, *, field: str = "amount") -> Decimal:
    """
    Parse a decimal string such as "25.00" in the currency's major units.

    Only the plain form is accepted: ASCII digits, an optional point and up
    to three decimals; no sign, exponent, underscores, spaces or leading zeros.
    """
    if not isinstance(value, str) or not value:
        raise MalformedCallback(f'{field} must be a decimal string such as "25.00"')
    if value.startswith("-") and _MAJOR_UNITS.fullmatch(value[1:]):
        raise MalformedCallback(f"{field} must be greater than zero")
    if not _MAJOR_UNITS.fullmatch(value):
        if value.isascii() and value.replace(".", "", 1).isdigit():
            raise MalformedCallback(f"{field} {shown(value)} is too large or has a leading zero")
        raise MalformedCallback(f'{field} {shown(value)} is not a number written like "25.00"')
    amount = Decimal(value)
    if amount <= 0:
        raise MalformedCallback(f"{field} must be greater than zero")
    if decimals_of(amount) > currency_exponent(currency):
        raise MalformedCallback(f"{field} {value} has more decimals than {currency} allows")
    return amount
