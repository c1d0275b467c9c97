"""
Stripe's event objects, read as orderflow's money facts.

==========================================  ==================================  ================
Stripe event type                           fact                                ledger reference
==========================================  ==================================  ================
payment_intent.amount_capturable_updated    authorized (amount on hold;         PaymentIntent
                                            nothing when it went down to 0)
payment_intent.succeeded                    captured (amount received)          PaymentIntent
payment_intent.payment_failed               declined (the customer may retry)   PaymentIntent
payment_intent.canceled                     voided: the hold released, or no    PaymentIntent
                                            amount when nothing was ever
                                            authorized (an abandoned checkout)
charge.refunded                             refunded: the newest succeeded or   Refund
                                            pending refund the charge lists
                                            (older API versions); nothing when
                                            the list is absent (current ones)
                                            or the charge was never captured
refund.created, refund.updated,             refunded (succeeded, pending);      Refund
refund.failed, charge.refund.updated        refund_failed (failed, canceled)
charge.dispute.created                      dispute_opened                      Dispute
charge.dispute.funds_withdrawn              dispute_funds_withdrawn (amount)    Dispute
charge.dispute.funds_reinstated             dispute_funds_reinstated (amount)   Dispute
charge.dispute.closed                       dispute_won (won, warning_closed;   Dispute
                                            with the reinstated amount when
                                            listed), dispute_lost (lost)
==========================================  ==================================  ================

Every fact names a payment the way the ledger does, whatever object reports
it: authorizations and captures by the PaymentIntent, refunds by the refund,
disputes by the dispute. ``order_reference`` is the PaymentIntent and
``references`` every other id the object carries (charges, refunds, the
dispute), so the order is found by whichever of them the ledger holds.

Both shapes of Stripe's objects are read: current API versions (a
PaymentIntent's ``latest_charge``, a Charge without its ``refunds``) and
older ones (a ``charges`` list on the PaymentIntent, ``refunds`` inside the
Charge). A refund of an uncaptured charge is how older versions report the
release of an authorization; it is not money going back to the customer.

Every other event type, and an event about an object that is not the one its
type names, is stored and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from payments.gateways.base import (
    MAX_EVENT_ID_LENGTH,
    MAX_EVENT_TYPE_LENGTH,
    MAX_ORDER_NUMBER_LENGTH,
    MAX_REFERENCE_LENGTH,
    FactKind,
    MalformedCallback,
    MoneyFact,
    ParsedCallback,
    checked_text,
    shown,
)
from payments.gateways.stripe_money import read_stripe_amount

PAYMENT_INTENT_EVENTS = {
    "payment_intent.amount_capturable_updated": FactKind.AUTHORIZED,
    "payment_intent.succeeded": FactKind.CAPTURED,
    "payment_intent.payment_failed": FactKind.DECLINED,
    "payment_intent.canceled": FactKind.VOIDED,
}
CHARGE_REFUNDED = "charge.refunded"
REFUND_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)
DISPUTE_CREATED = "charge.dispute.created"
DISPUTE_FUNDS_WITHDRAWN = "charge.dispute.funds_withdrawn"
DISPUTE_FUNDS_REINSTATED = "charge.dispute.funds_reinstated"
DISPUTE_CLOSED = "charge.dispute.closed"
DISPUTE_EVENTS = frozenset(
    {DISPUTE_CREATED, DISPUTE_FUNDS_WITHDRAWN, DISPUTE_FUNDS_REINSTATED, DISPUTE_CLOSED}
)

OBJECT_OF_EVENT: dict[str, str] = {
    **dict.fromkeys(PAYMENT_INTENT_EVENTS, "payment_intent"),
    CHARGE_REFUNDED: "charge",
    **dict.fromkeys(REFUND_EVENTS, "refund"),
    **dict.fromkeys(DISPUTE_EVENTS, "dispute"),
}
"""The Stripe object each event type orderflow reads is about."""

SUBSCRIBED_EVENTS = tuple(OBJECT_OF_EVENT)
"""The event types a Stripe webhook endpoint for orderflow subscribes to."""

# A refund in one of these states has moved, or is moving, the money back.
COUNTED_REFUND_STATUSES = frozenset({"succeeded", "pending"})
# A refund reported earlier that ends in one of these gave the money back to the store.
FAILED_REFUND_STATUSES = frozenset({"failed", "canceled"})
# Stripe's reason on the refund that releases an uncaptured charge when its hold expires.
RELEASE_REFUND_REASON = "expired_uncaptured_charge"
# PaymentIntents with these capture methods never hold money uncaptured.
AUTOMATIC_CAPTURE_METHODS = ("automatic", "automatic_async")
WON_DISPUTE_STATUSES = frozenset({"won", "warning_closed"})
LOST_DISPUTE_STATUSES = frozenset({"lost"})


@dataclass(frozen=True)
class _Reading:
    """What one Stripe object says, before the event's envelope is added."""

    fact: MoneyFact | None
    order_reference: str = ""
    references: tuple[str, ...] = ()
    ignore_reason: str = ""


def read_event(data: Mapping[str, Any]) -> ParsedCallback:
    """Return a Stripe event (decoded JSON) in orderflow's terms, or raise MalformedCallback."""
    event_id = _text(data, "id", "", max_length=MAX_EVENT_ID_LENGTH)
    event_type = _text(data, "type", "", max_length=MAX_EVENT_TYPE_LENGTH)
    expected = OBJECT_OF_EVENT.get(event_type)
    if expected is None:
        return ParsedCallback(event_id=event_id, event_type=event_type, fact=None)
    payload = data.get("data")
    obj = payload.get("object") if isinstance(payload, dict) else None
    if not isinstance(obj, dict):
        raise MalformedCallback("missing field: data.object")
    where = "data.object."
    kind = obj.get("object")
    if kind is not None and kind != expected:
        return ParsedCallback(
            event_id=event_id,
            event_type=event_type,
            fact=None,
            ignore_reason=(
                f"A {event_type} event about a {shown(kind)} object is not about a payment."
            ),
        )
    reader = _READERS[expected]
    reading = reader(event_type, obj, where)
    references = tuple(
        dict.fromkeys(ref for ref in reading.references if ref and ref != reading.order_reference)
    )
    return ParsedCallback(
        event_id=event_id,
        event_type=event_type,
        fact=reading.fact,
        order_number=_order_number(obj, where),
        order_reference=reading.order_reference,
        references=references,
        ignore_reason=reading.ignore_reason if reading.fact is None else "",
    )


# -- PaymentIntents -------------------------------------------------------------------------


def _read_payment_intent(event_type: str, obj: Mapping[str, Any], where: str) -> _Reading:
    intent_id = _text(obj, "id", where)
    currency = _currency(obj, where)
    charges, charge_ids = _charges_of_intent(obj, where)
    references = (*charge_ids, *_refund_ids_of_charges(charges, where))
    kind = PAYMENT_INTENT_EVENTS[event_type]
    amount: Decimal | None = None
    if kind == FactKind.AUTHORIZED:
        value = _required(obj, "amount_capturable", where)
        if value == 0:
            return _Reading(
                None,
                intent_id,
                references,
                "Nothing to record: the amount on hold went down to nothing.",
            )
        amount = read_stripe_amount(value, currency, field=f"{where}amount_capturable")
    elif kind == FactKind.CAPTURED:
        value = _required(obj, "amount_received", where)
        amount = read_stripe_amount(value, currency, field=f"{where}amount_received")
    elif kind == FactKind.VOIDED:
        amount = _released_hold(obj, charges, currency, where)
    fact = MoneyFact(kind=kind, reference=intent_id, amount=amount, currency=currency)
    return _Reading(fact, intent_id, references)


def _charges_of_intent(
    obj: Mapping[str, Any], where: str
) -> tuple[list[Mapping[str, Any]] | None, list[str]]:
    """
    Return the PaymentIntent's charges as objects (None when only ids are known) and their ids.

    Current API versions name the latest charge (``latest_charge``, an id
    unless expanded); older ones list every charge (``charges``).
    """
    charges: list[Mapping[str, Any]] | None = None
    ids: list[str] = []
    latest = obj.get("latest_charge")
    if isinstance(latest, dict):
        charges = [latest]
        ids.append(_text(latest, "id", f"{where}latest_charge."))
    elif latest is not None:
        ids.append(_optional_text(obj, "latest_charge", where))
    listed = obj.get("charges")
    if listed is not None:
        items = _list_items(listed, f"{where}charges")
        charges = [*(charges or []), *items]
        ids.extend(
            _text(item, "id", f"{where}charges.data[{position}].")
            for position, item in enumerate(items)
        )
    return charges, ids


def _refund_ids_of_charges(charges: list[Mapping[str, Any]] | None, where: str) -> list[str]:
    ids: list[str] = []
    for charge in charges or []:
        refunds = charge.get("refunds")
        if refunds is None:
            continue
        items = _list_items(refunds, f"{where}charges.data[].refunds")
        ids.extend(_text(item, "id", f"{where}charges.data[].refunds.data[].") for item in items)
    return ids


def _released_hold(
    obj: Mapping[str, Any],
    charges: list[Mapping[str, Any]] | None,
    currency: str,
    where: str,
) -> Decimal | None:
    """
    Return the hold a cancelled PaymentIntent released, or None if it never held money.

    A PaymentIntent cancelled while Stripe held the customer's money released
    that hold (a void). One cancelled before any authorization (no charge, or
    only failed attempts) is an abandoned checkout: it released nothing.
    """
    if charges is not None:
        # The charges themselves say it: an authorization is a successful
        # charge that was never captured.
        for position, charge in enumerate(charges):
            if charge.get("status") == "succeeded" and charge.get("captured") is False:
                field = f"{where}charges.data[{position}].amount"
                return read_stripe_amount(charge.get("amount"), currency, field=field)
        return None
    capturable = obj.get("amount_capturable")
    if isinstance(capturable, int) and not isinstance(capturable, bool) and capturable > 0:
        return read_stripe_amount(capturable, currency, field=f"{where}amount_capturable")
    if obj.get("capture_method") in AUTOMATIC_CAPTURE_METHODS:
        # Captured the moment it succeeds: cancelled, it never held money.
        return None
    # Only the latest charge's id is known. A PaymentIntent captured by hand
    # can be cancelled with a successful charge only while that charge is an
    # uncaptured authorization; a failed attempt leaves its error in
    # last_payment_error.
    if obj.get("latest_charge") and obj.get("last_payment_error") is None:
        return read_stripe_amount(obj.get("amount"), currency, field=f"{where}amount")
    return None


# -- Charges ---------------------------------------------------------------------------------


def _read_charge(event_type: str, obj: Mapping[str, Any], where: str) -> _Reading:
    charge_id = _text(obj, "id", where)
    intent_id = _id_of(obj, "payment_intent", where)
    currency = _currency(obj, where)
    refunds = obj.get("refunds")
    items = _list_items(refunds, f"{where}refunds") if refunds is not None else []
    references = (
        charge_id,
        *(
            _text(item, "id", f"{where}refunds.data[{position}].")
            for position, item in enumerate(items)
        ),
    )
    if refunds is None:
        # Since API version 2022-11-15 a Charge leaves its refunds out unless
        # expanded; each refund then arrives as a refund.* event of its own.
        reason = "The charge lists no refunds; each refund is recorded from its refund event."
        return _Reading(None, intent_id, references, reason)
    if obj.get("captured") is False:
        reason = (
            "The charge was never captured: its refund releases an authorization "
            "(older API versions report the release this way); no captured money went back."
        )
        return _Reading(None, intent_id, references, reason)
    position = _latest_counted_refund(items, where)
    if position is None:
        reason = "Nothing to record: the charge lists no succeeded or pending refund."
        return _Reading(None, intent_id, references, reason)
    fact = _refund_money(
        items[position],
        f"{where}refunds.data[{position}].",
        FactKind.REFUNDED,
        default_currency=currency,
    )
    return _Reading(fact, intent_id, references)


def _latest_counted_refund(items: list[Mapping[str, Any]], where: str) -> int | None:
    """Return the position of the most recent succeeded or pending refund a Charge lists."""
    latest: tuple[int, int] | None = None
    chosen: int | None = None
    for position, item in enumerate(items):
        item_where = f"{where}refunds.data[{position}]."
        if _text(item, "status", item_where) not in COUNTED_REFUND_STATUSES:
            continue
        if item.get("reason") == RELEASE_REFUND_REASON:
            continue
        created = item.get("created")
        if isinstance(created, bool) or not isinstance(created, int):
            raise MalformedCallback(f"missing field: {item_where}created (unix seconds)")
        # Stripe lists the newest first: on a tie, the earlier item wins.
        key = (created, -position)
        if latest is None or key > latest:
            latest, chosen = key, position
    return chosen


# -- Refunds ---------------------------------------------------------------------------------


def _read_refund(event_type: str, obj: Mapping[str, Any], where: str) -> _Reading:
    refund_id = _text(obj, "id", where)
    intent_id = _id_of(obj, "payment_intent", where)
    references = (_id_of(obj, "charge", where), refund_id)
    status = _text(obj, "status", where)
    if obj.get("reason") == RELEASE_REFUND_REASON:
        reason = (
            "The refund releases an uncaptured authorization whose hold expired; "
            "no captured money went back."
        )
        return _Reading(None, intent_id, references, reason)
    if status in COUNTED_REFUND_STATUSES:
        kind = FactKind.REFUNDED
    elif status in FAILED_REFUND_STATUSES:
        kind = FactKind.REFUND_FAILED
    else:
        reason = f"Nothing to record: a refund that is {shown(status)} has moved no money yet."
        return _Reading(None, intent_id, references, reason)
    return _Reading(_refund_money(obj, where, kind), intent_id, references)


def _refund_money(
    refund: Mapping[str, Any], where: str, kind: FactKind, default_currency: str = ""
) -> MoneyFact:
    refund_id = _text(refund, "id", where)
    currency = _currency(refund, where) if refund.get("currency") else default_currency
    if not currency:
        raise MalformedCallback(f"missing field: {where}currency")
    amount = read_stripe_amount(refund.get("amount"), currency, field=f"{where}amount")
    return MoneyFact(kind=kind, reference=refund_id, amount=amount, currency=currency)


# -- Disputes --------------------------------------------------------------------------------


def _read_dispute(event_type: str, obj: Mapping[str, Any], where: str) -> _Reading:
    dispute_id = _text(obj, "id", where)
    intent_id = _id_of(obj, "payment_intent", where)
    references = (_id_of(obj, "charge", where), dispute_id)
    currency = _currency(obj, where)
    amount: Decimal | None = None
    if event_type == DISPUTE_CREATED:
        kind = FactKind.DISPUTE_OPENED
    elif event_type == DISPUTE_FUNDS_WITHDRAWN:
        kind = FactKind.DISPUTE_FUNDS_WITHDRAWN
        amount = _dispute_money(obj, currency, where, withdrawn=True)
    elif event_type == DISPUTE_FUNDS_REINSTATED:
        kind = FactKind.DISPUTE_FUNDS_REINSTATED
        amount = _dispute_money(obj, currency, where, withdrawn=False)
    else:
        status = _text(obj, "status", where)
        if status in WON_DISPUTE_STATUSES:
            kind = FactKind.DISPUTE_WON
            amount = _dispute_money(obj, currency, where, withdrawn=False, required=False)
        elif status in LOST_DISPUTE_STATUSES:
            kind = FactKind.DISPUTE_LOST
        else:
            reason = f"A dispute closed as {shown(status)} is neither won nor lost."
            return _Reading(None, intent_id, references, reason)
    fact = MoneyFact(kind=kind, reference=dispute_id, amount=amount, currency=currency)
    return _Reading(fact, intent_id, references)


def _dispute_money(
    obj: Mapping[str, Any], currency: str, where: str, *, withdrawn: bool, required: bool = True
) -> Decimal | None:
    """
    Return the money a dispute withdrew (or reinstated), from its balance transactions.

    A withdrawal is a negative balance transaction, a reinstatement a positive
    one; their fees are not the order's money. Balance transactions are in
    the account's settlement currency: when one is not in the dispute's
    currency, or none is listed yet, the disputed amount stands for the money
    (None instead when ``required`` is false).
    """
    listed = obj.get("balance_transactions")
    if listed is None:
        listed = []
    if not isinstance(listed, list):
        raise MalformedCallback(f"field {where}balance_transactions must be a list")
    total = 0
    same_currency = True
    for position, item in enumerate(listed):
        item_where = f"{where}balance_transactions[{position}]."
        if not isinstance(item, dict):
            raise MalformedCallback(f"field {item_where[:-1]} must be an object")
        value = item.get("amount")
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedCallback(f"{item_where}amount {shown(value)} is not a whole number")
        if (value < 0) if withdrawn else (value > 0):
            total += abs(value)
            if _currency(item, item_where) != currency:
                same_currency = False
    field = f"{where}balance_transactions"
    if total and same_currency:
        return read_stripe_amount(total, currency, field=field)
    if not required and not total:
        return None
    return read_stripe_amount(obj.get("amount"), currency, field=f"{where}amount")


# -- reading fields --------------------------------------------------------------------------


_READERS = {
    "payment_intent": _read_payment_intent,
    "charge": _read_charge,
    "refund": _read_refund,
    "dispute": _read_dispute,
}


def _text(
    obj: Mapping[str, Any], field: str, where: str, *, max_length: int = MAX_REFERENCE_LENGTH
) -> str:
    return checked_text(obj.get(field), f"{where}{field}", max_length=max_length)


def _optional_text(
    obj: Mapping[str, Any], field: str, where: str, *, max_length: int = MAX_REFERENCE_LENGTH
) -> str:
    return checked_text(obj.get(field), f"{where}{field}", max_length=max_length, required=False)


def _id_of(obj: Mapping[str, Any], field: str, where: str) -> str:
    """Return the id a field names: an id, or an object expanded in its place ('' when null)."""
    value = obj.get(field)
    if isinstance(value, dict):
        return _text(value, "id", f"{where}{field}.")
    return _optional_text(obj, field, where)


def _required(obj: Mapping[str, Any], field: str, where: str) -> Any:
    value = obj.get(field)
    if value is None:
        raise MalformedCallback(f"missing field: {where}{field}")
    return value


def _currency(obj: Mapping[str, Any], where: str) -> str:
    currency = _text(obj, "currency", where, max_length=32).upper()
    if len(currency) != 3 or not currency.isalpha() or not currency.isascii():
        raise MalformedCallback(f"currency {shown(currency)} is not a 3-letter ISO code")
    return currency


def _list_items(value: object, field: str) -> list[Mapping[str, Any]]:
    """Return the objects of a Stripe list (``{"object": "list", "data": [...]}``)."""
    items = value.get("data") if isinstance(value, dict) else None
    if not isinstance(items, list):
        raise MalformedCallback(f"field {field}.data must be a list")
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise MalformedCallback(f"field {field}.data[{position}] must be an object")
    return items


def _order_number(obj: Mapping[str, Any], where: str) -> str:
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise MalformedCallback(f"field {where}metadata must be an object")
    return _optional_text(
        metadata, "order_number", f"{where}metadata.", max_length=MAX_ORDER_NUMBER_LENGTH
    )
