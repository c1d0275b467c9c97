"""
Money in a currency's units.

Amounts are Decimals stored with three places, enough for every ISO 4217
currency (KWD and BHD have three; JPY none). Gateways that count in minor
units (cents, yen, fils) are converted with the currency's exponent.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.translation import gettext as _

STORAGE_PLACES = 3
MONEY_FIELD = {"max_digits": 15, "decimal_places": STORAGE_PLACES}
ZERO = Decimal(0).scaleb(-STORAGE_PLACES)
STORAGE_LIMIT = Decimal(10) ** (MONEY_FIELD["max_digits"] - STORAGE_PLACES)
"""The first amount a money column cannot hold."""
MAX_AMOUNT = Decimal("1e11")
"""The first amount one order, payment or refund may not have (running totals need room)."""


def money(value: Decimal | int | float | str | None) -> Decimal:
    """Return an amount at storage precision (SQLite sums come back as floats)."""
    return Decimal(str(value) if value is not None else 0).quantize(ZERO)


# ISO 4217 minor-unit exponents that are not 2.
_EXPONENTS = {
    **dict.fromkeys(
        [
            "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
            "VND", "VUV", "XAF", "XOF", "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}  # fmt: skip


def currency_exponent(currency: str) -> int:
    """Return how many decimals the currency's minor unit has (JPY 0, USD 2, KWD 3)."""
    return _EXPONENTS.get(currency.upper(), 2)


def decimals_of(amount: Decimal) -> int:
    """Return how many decimals ``amount`` has, trailing zeros aside, exactly.

    Not through ``normalize()``: it rounds to the context's 28 digits (so
    "40.0000000000000000000000000001" would look whole) and overflows on
    "1e999999999".
    """
    _, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int) or not any(digits):
        return 0
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing_zeros))


def in_currency(amount: Decimal | int | float | str | None, currency: str) -> Decimal:
    """Return the amount rounded to the currency's decimals (for sums and display)."""
    value = Decimal(str(amount)) if amount is not None else Decimal(0)
    return value.quantize(Decimal(1).scaleb(-currency_exponent(currency)))


def format_money(amount: Decimal | None, currency: str) -> str:
    """Return e.g. "25.00 USD", "1500 JPY", "1.234 KWD"."""
    return f"{in_currency(amount, currency)} {currency}"


def from_minor_units(value: int, currency: str) -> Decimal:
    """Convert a whole number of minor units to an amount."""
    return Decimal(value).scaleb(-currency_exponent(currency))


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Convert an amount to a whole number of the currency's minor units."""
    scaled = Decimal(amount).scaleb(currency_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more decimals than {currency} allows")
    return int(scaled)


class InvalidAmount(ValueError):
    """An amount that is not a positive number valid in its currency (message for staff)."""


def parse_amount(value: Any, *, what: str, currency: str) -> Decimal:
    """
    Return ``value`` as a positive amount valid in ``currency``.

    ``what`` names the amount in the message (e.g. "The order total"). Raise
    InvalidAmount naming the problem: not a number, not positive, more
    decimals than the currency has, or too large to store.
    """
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise InvalidAmount(
            _("%(what)s %(value)r is not a number.") % {"what": what, "value": value}
        ) from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidAmount(_("%(what)s must be greater than zero.") % {"what": what})
    if decimals_of(amount) > currency_exponent(currency):
        raise InvalidAmount(
            _("%(what)s %(value)s has more decimals than %(currency)s allows.")
            % {"what": what, "value": value, "currency": currency}
        )
    if amount >= MAX_AMOUNT:
        raise InvalidAmount(_("%(what)s is too large.") % {"what": what})
    return money(amount)
