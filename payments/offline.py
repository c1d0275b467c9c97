"""
Money staff receive or return outside any gateway: cheques and wire transfers.

The cheque or transfer number is the ledger reference, unique per payment
method like a gateway's id, so the same cheque recorded twice counts once.
The money is applied as a capture or refund fact (``payments.facts``): the
status follows the money kept through the same transitions as a gateway's,
and money the status table does not allow is kept and flags the order.
"""

from __future__ import annotations

import unicodedata
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils.translation import gettext as _

from orderflow.audit import Channel, audit_context, channel_or
from orderflow.money import ZERO, InvalidAmount, format_money, parse_amount
from orders.models import Order
from payments.exceptions import PaymentError
from payments.facts import LEDGER_KIND, ApplyResult, apply_fact
from payments.gateways.base import FactKind, MoneyFact
from payments.models import EventOutcome, PaymentTransaction

PERMISSION = "payments.record_offline_payment"

MAX_REFERENCE_LENGTH = PaymentTransaction._meta.get_field("reference").max_length

# Control and invisible format characters, lone surrogates, unassigned code
# points: none belongs in a cheque or transfer number staff type or read.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Cn"})


def record_payment(
    order: Order, *, amount: Any, reference: str, user: Any, reason: str = ""
) -> ApplyResult:
    """Record money received for an offline order (see ``payments.services``)."""
    return _record(
        order, FactKind.CAPTURED, amount=amount, reference=reference, user=user, reason=reason
    )


def record_refund(
    order: Order, *, amount: Any, reference: str, user: Any, reason: str
) -> ApplyResult:
    """Record money returned for an offline order (see ``payments.services``)."""
    return _record(
        order, FactKind.REFUNDED, amount=amount, reference=reference, user=user, reason=reason
    )


def clean_reference(value: Any) -> str:
    """Return a cheque or transfer number stripped of spaces; raise PaymentError if unusable."""
    text = "" if value is None else str(value).strip()
    if not text:
        raise PaymentError(_("The cheque or transfer number (the reference) is required."))
    if len(text) > MAX_REFERENCE_LENGTH:
        raise PaymentError(
            _("The reference is longer than %(max)s characters.") % {"max": MAX_REFERENCE_LENGTH}
        )
    if any(unicodedata.category(char) in _UNPRINTABLE for char in text):
        raise PaymentError(_("The reference contains control or invisible characters."))
    return text


def _record(
    order: Order, kind: FactKind, *, amount: Any, reference: str, user: Any, reason: str
) -> ApplyResult:
    if user is not None and not user.has_perm(PERMISSION):
        raise PermissionDenied(_("You are not allowed to record offline payments and refunds."))
    reference = clean_reference(reference)
    reason = (reason or "").strip()
    if kind == FactKind.REFUNDED and not reason:
        raise PaymentError(_("A reason is required to record a refund."))

    with transaction.atomic():
        locked = Order.objects.lock(order)
        method = locked.payment_method
        if method.is_online:
            raise PaymentError(
                _(
                    "Order %(number)s is paid through %(method)s, an online gateway: "
                    "capture or refund its money through the gateway, not by hand."
                )
                % {"number": locked.number, "method": method.name}
            )
        try:
            value = parse_amount(amount, what=_("The amount"), currency=locked.currency)
        except InvalidAmount as exc:
            raise PaymentError(str(exc)) from None

        # Before the balance: the same cheque entered again once it made the
        # order Paid is a duplicate, not an overpayment.
        existing = (
            PaymentTransaction.objects.filter(
                payment_method_id=method.pk, kind=LEDGER_KIND[kind], reference=reference
            )
            .select_related("order")
            .first()
        )
        if existing is not None:
            return _already_recorded(locked, existing, value)
        _check_balance(locked, kind, value)

        if not reason:
            reason = _("%(method)s %(reference)s received: %(amount)s.") % {
                "method": method.name,
                "reference": reference,
                "amount": format_money(value, locked.currency),
            }
        channel = channel_or(Channel.ADMIN if user is not None else Channel.SYSTEM)
        with audit_context(channel=channel, user=user, reason=reason):
            result = apply_fact(
                locked, MoneyFact(kind, reference, value, locked.currency), user=user
            )
        if result.outcome == EventOutcome.DUPLICATE:
            # Recorded for another order between the check above and the
            # insert: the unique constraint decided.
            return _already_recorded(locked, result.transaction, value)
    return result


def _already_recorded(order: Order, row: PaymentTransaction, amount: Decimal) -> ApplyResult:
    """Answer a reference already in the ledger: the same money, or a mistake to refuse."""
    values = {
        "reference": row.reference,
        "number": row.order.number,
        "recorded": format_money(row.amount, row.currency),
        "amount": format_money(amount, order.currency),
        "id": row.pk,
    }
    if row.order_id != order.pk:
        raise PaymentError(
            _(
                "Reference %(reference)s is already recorded for order %(number)s "
                "(%(recorded)s); a cheque or transfer is recorded once."
            )
            % values
        )
    if row.amount != amount:
        raise PaymentError(
            _(
                "Reference %(reference)s is already recorded for this order with another "
                "amount (%(recorded)s, not %(amount)s); check the reference and the amount."
            )
            % values
        )
    return ApplyResult(
        EventOutcome.DUPLICATE,
        order,
        _(
            "Reference %(reference)s (%(recorded)s) is already recorded as ledger entry "
            "%(id)s; nothing was recorded again."
        )
        % values,
        row,
    )


def _check_balance(order: Order, kind: FactKind, amount: Decimal) -> None:
    """Refuse a payment beyond what is outstanding, a refund beyond what can be refunded."""
    if kind == FactKind.CAPTURED:
        limit = max(order.total - order.net_paid_amount, ZERO)
        message = _("%(amount)s is more than what is outstanding on order %(number)s (%(limit)s).")
    else:
        limit = order.captured_amount - order.refunded_amount
        message = _(
            "%(amount)s is more than the refundable balance of order %(number)s (%(limit)s)."
        )
    if amount > limit:
        raise PaymentError(
            message
            % {
                "amount": format_money(amount, order.currency),
                "number": order.number,
                "limit": format_money(limit, order.currency),
            }
        )
