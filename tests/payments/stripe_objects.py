"""
Stripe's own published example objects, linked to test orders.

The JSON files in ``stripe_payloads/`` are Stripe's published example
objects, kept exactly as published (its README says where each comes from).
A test changes only what links an object to a test order or to a step of a
payment's lifecycle: ids, amounts, currency, status fields and metadata.
``published()`` refuses to change any other field, so every other field is
what Stripe itself sends.

Two shapes of the API are built from the same objects:

- ``CURRENT`` (the published objects' version, 2022-11-15, and later): a
  PaymentIntent names its ``latest_charge``; a Charge leaves out its
  ``refunds`` list.
- ``OLDER`` (before 2022-11-15): a PaymentIntent lists its ``charges``
  instead of naming the latest; a Charge lists its ``refunds``. Both lists
  take the form of the list the published Charge carries.
"""

from __future__ import annotations

import copy
import itertools
import json
from functools import cache
from pathlib import Path
from typing import Any

import stripe

PAYLOADS = Path(__file__).parent / "stripe_payloads"

CURRENT = "current"
OLDER = "older"
SHAPES = (CURRENT, OLDER)
OLDER_API_VERSION = "2020-08-27"
"""A version before 2022-11-15, when PaymentIntents listed charges and Charges refunds."""

LINKING_FIELDS = frozenset(
    {
        # ids that tie objects to each other and to a test order
        "id",
        "payment_intent",
        "charge",
        "latest_charge",
        "source",
        "client_secret",  # Stripe's client secret starts with its PaymentIntent's id
        # amounts and their currency
        "amount",
        "amount_capturable",
        "amount_received",
        "amount_captured",
        "amount_refunded",
        "fee",
        "net",
        "currency",
        # where the payment stands in its lifecycle
        "status",
        "captured",
        "paid",
        "refunded",
        "disputed",
        "capture_method",
        "cancellation_reason",
        "type",
        "reporting_category",
        "metadata",
        # nested lists of other published objects
        "refunds",
        "charges",
        "balance_transactions",
        # the event envelope
        "data",
        "api_version",
    }
)
"""The only fields a test may change in a published object."""

ADDED_FOR_OLDER_SHAPE = frozenset({"charges"})
"""Fields the older API shape has that the published objects do not."""

_ids = itertools.count(1)


def stripe_id(prefix: str) -> str:
    """Return a new id of Stripe's form (``pi_3Qx00000001TEST``)."""
    return f"{prefix}_3Qx{next(_ids):08d}TEST"


@cache
def _load(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def published(name: str, *, without: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    """
    Return a copy of Stripe's published ``name`` object with ``changes``.

    Only LINKING_FIELDS may change; ``without`` drops fields that a shape
    of the API leaves out.
    """
    obj = copy.deepcopy(_load(name))
    for field, value in changes.items():
        if field not in LINKING_FIELDS:
            raise AssertionError(f"{name}.{field} is Stripe's own field: keep it as published")
        if field not in obj and field not in ADDED_FOR_OLDER_SHAPE:
            raise AssertionError(f"Stripe's published {name} has no field {field}")
        obj[field] = value
    for field in without:
        del obj[field]
    return obj


def stripe_list(items: list[dict[str, Any]], *, url: str) -> dict[str, Any]:
    """Return a Stripe list of ``items``, in the form of the published Charge's refund list."""
    form = copy.deepcopy(_load("charge")["refunds"])
    form.update(data=items, url=url)
    return form


# -- objects ---------------------------------------------------------------------------------


def payment_intent(
    intent_id: str,
    *,
    amount: int,
    status: str,
    currency: str = "usd",
    shape: str = CURRENT,
    amount_capturable: int = 0,
    amount_received: int = 0,
    charges: tuple[dict[str, Any], ...] = (),
    order_number: str | None = None,
    capture_method: str = "automatic",
    cancellation_reason: str | None = None,
) -> dict[str, Any]:
    """A PaymentIntent; ``charges`` are its charges, newest first."""
    secret_suffix = _load("payment_intent")["client_secret"].split("_secret_", 1)[1]
    changes: dict[str, Any] = {
        "id": intent_id,
        "client_secret": f"{intent_id}_secret_{secret_suffix}",
        "amount": amount,
        "amount_capturable": amount_capturable,
        "amount_received": amount_received,
        "currency": currency,
        "status": status,
        "capture_method": capture_method,
        "cancellation_reason": cancellation_reason,
        "metadata": {"order_number": order_number} if order_number else {},
    }
    if shape == OLDER:
        listed = stripe_list(list(charges), url=f"/v1/charges?payment_intent={intent_id}")
        return published("payment_intent", without=("latest_charge",), charges=listed, **changes)
    latest = charges[0]["id"] if charges else None
    return published("payment_intent", latest_charge=latest, **changes)


def charge(
    charge_id: str,
    *,
    intent_id: str | None,
    amount: int,
    currency: str = "usd",
    shape: str = CURRENT,
    status: str = "succeeded",
    captured: bool = True,
    amount_refunded: int = 0,
    refunds: tuple[dict[str, Any], ...] = (),
    disputed: bool = False,
    order_number: str | None = None,
) -> dict[str, Any]:
    """A Charge; ``refunds`` are listed only in the older shape, newest first."""
    changes: dict[str, Any] = {
        "id": charge_id,
        "payment_intent": intent_id,
        "amount": amount,
        "amount_captured": amount if captured else 0,
        "amount_refunded": amount_refunded,
        "currency": currency,
        "status": status,
        "paid": status == "succeeded",
        "captured": captured,
        "refunded": amount_refunded >= amount,
        "disputed": disputed,
        "metadata": {"order_number": order_number} if order_number else {},
    }
    if shape == OLDER:
        listed = stripe_list(list(refunds), url=f"/v1/charges/{charge_id}/refunds")
        return published("charge", refunds=listed, **changes)
    return published("charge", without=("refunds",), **changes)


def refund(
    refund_id: str,
    *,
    intent_id: str | None,
    charge_id: str | None,
    amount: int,
    status: str,
    currency: str = "usd",
    order_number: str | None = None,
) -> dict[str, Any]:
    """A Refund; one made in Stripe's dashboard has no metadata."""
    return published(
        "refund",
        id=refund_id,
        payment_intent=intent_id,
        charge=charge_id,
        amount=amount,
        currency=currency,
        status=status,
        metadata={"order_number": order_number} if order_number else {},
    )


def balance_transaction(
    transaction_id: str,
    *,
    source: str,
    amount: int,
    fee: int,
    currency: str = "usd",
    reporting_category: str,
) -> dict[str, Any]:
    """A balance transaction of a dispute: a withdrawal (amount < 0) or a reinstatement."""
    return published(
        "balance_transaction",
        id=transaction_id,
        source=source,
        amount=amount,
        fee=fee,
        net=amount - fee,
        currency=currency,
        type="adjustment",
        reporting_category=reporting_category,
    )


def dispute(
    dispute_id: str,
    *,
    charge_id: str,
    intent_id: str | None,
    amount: int,
    status: str,
    currency: str = "usd",
    balance_transactions: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    """A Dispute with the balance transactions Stripe made for it so far."""
    return published(
        "dispute",
        id=dispute_id,
        charge=charge_id,
        payment_intent=intent_id,
        amount=amount,
        currency=currency,
        status=status,
        balance_transactions=list(balance_transactions),
    )


def event(event_type: str, obj: dict[str, Any], *, shape: str = CURRENT) -> bytes:
    """Stripe's event about ``obj``, as the body Stripe posts."""
    changes: dict[str, Any] = {"id": stripe_id("evt"), "type": event_type, "data": {"object": obj}}
    if shape == OLDER:
        changes["api_version"] = OLDER_API_VERSION
    body = published("event", **changes)
    return json.dumps(body, indent=2).encode()


def signature(body: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``body``."""
    return stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=timestamp
    )
