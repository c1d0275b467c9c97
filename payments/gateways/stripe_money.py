"""
Stripe's minor units: its own currency table, not ISO 4217.

Stripe sends and takes amounts as whole numbers of a currency's smallest
unit, but counts some currencies differently from ISO 4217 (Stripe's
"Supported currencies" page):

- zero-decimal: BIF, CLP, DJF, GNF, JPY, KMF, KRW, MGA, PYG, RWF, UGX, VND,
  VUV, XAF, XOF, XPF. MGA has two decimals in ISO 4217; Stripe has none.
- ISK has no decimals in ISO 4217, but Stripe counts it with two: 500000 is
  5,000 kronur.
- three-decimal: BHD, JOD, KWD, OMR, TND, in thousandths that must be a
  multiple of 10 (1.230 KWD is 1230; 1.234 KWD cannot be sent).
- every other currency has two decimals.

The same table reads callbacks and writes capture and refund requests, so
an amount goes out and comes back as the same money.
"""

from __future__ import annotations

from decimal import Decimal

from django.utils.translation import gettext as _

from payments.gateways.base import MalformedCallback, minor_units_amount

ZERO_DECIMAL = frozenset(
    {
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND",
        "VUV", "XAF", "XOF", "XPF",
    }
)  # fmt: skip
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
THREE_DECIMAL_STEP = 10
"""Stripe's amounts in three-decimal currencies are multiples of this many thousandths."""


def stripe_exponent(currency: str) -> int:
    """Return how many decimals Stripe counts for ``currency`` (JPY 0, ISK 2, KWD 3)."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def from_stripe_units(value: int, currency: str) -> Decimal:
    """Convert a whole number of Stripe's minor units to an amount."""
    return Decimal(value).scaleb(-stripe_exponent(currency))


def read_stripe_amount(value: object, currency: str, *, field: str) -> Decimal:
    """
    Parse an amount from a Stripe object, or raise MalformedCallback naming the problem.

    The value must be a positive whole number of Stripe's minor units, and a
    multiple of 10 in a three-decimal currency.
    """
    amount = minor_units_amount(value, currency, field=field, exponent=stripe_exponent(currency))
    if currency.upper() in THREE_DECIMAL and value % THREE_DECIMAL_STEP:  # type: ignore[operator]
        raise MalformedCallback(
            f"{field} {value} is not a multiple of {THREE_DECIMAL_STEP}: Stripe counts "
            f"{currency.upper()} in thousandths that end in 0"
        )
    return amount


class UnsendableAmount(ValueError):
    """An amount Stripe cannot take exactly in its currency (the message is for staff)."""


def to_stripe_units(amount: Decimal, currency: str) -> int:
    """
    Convert an amount to the whole number of minor units Stripe takes.

    Nothing is rounded away: raise UnsendableAmount when the amount has more
    decimals than Stripe counts for the currency, or is not a multiple of
    10 thousandths in a three-decimal currency.
    """
    code = currency.upper()
    exponent = stripe_exponent(code)
    scaled = Decimal(amount).scaleb(exponent)
    values = {"amount": amount, "currency": code}
    if scaled != scaled.to_integral_value():
        raise UnsendableAmount(
            _(
                "%(amount)s %(currency)s cannot be sent to Stripe: Stripe counts "
                "%(currency)s with %(places)s decimals."
            )
            % {**values, "places": exponent}
        )
    units = int(scaled)
    if code in THREE_DECIMAL and units % THREE_DECIMAL_STEP:
        raise UnsendableAmount(
            _(
                "%(amount)s %(currency)s cannot be sent to Stripe: Stripe takes "
                "%(currency)s amounts in multiples of 0.010 (%(units)s thousandths is not "
                "a multiple of 10)."
            )
            % {**values, "units": units}
        )
    return units
