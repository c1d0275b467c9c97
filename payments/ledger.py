"""
The ledger: one row per money movement, and the order's running totals.

Rows are facts: never changed, never deleted, and ``(payment method, kind,
reference)`` is unique in the database, so a movement reported twice is
counted once. Each order keeps running totals of its rows, written here in
the same transaction as the row, under the order's lock, so that the money
checks and the attention filter are plain column comparisons.
"""

from __future__ import annotations

from decimal import Decimal

from django.utils.translation import gettext as _

from orderflow.audit import Channel, current_audit
from orderflow.inserts import insert_unless_present
from orderflow.money import STORAGE_LIMIT, format_money, money
from orders.models import Order
from payments.exceptions import InvalidPaymentEvent
from payments.models import GatewayEvent, PaymentTransaction, TransactionKind

RUNNING_TOTAL: dict[str, tuple[str, int]] = {
    TransactionKind.CAPTURE: ("captured_amount", +1),
    TransactionKind.REFUND: ("refunded_amount", +1),
    TransactionKind.REFUND_REVERSAL: ("refunded_amount", -1),
    TransactionKind.DISPUTE: ("disputed_amount", +1),
    TransactionKind.DISPUTE_REVERSAL: ("disputed_amount", -1),
}
"""Which running total of the order a row of each money-moving kind changes, and how."""


def record_transaction(
    *,
    order: Order,
    kind: str,
    amount: Decimal,
    reference: str,
    gateway_event: GatewayEvent | None = None,
    save_totals: bool = True,
) -> tuple[PaymentTransaction, bool]:
    """
    Write one ledger row unless ``(method, kind, reference)`` is already there.

    Return the row and whether it was created (if not, the row already
    there, which may be another order's). The caller holds the order lock;
    the insert itself finds the reference, the unique constraint being the
    last word. ``save_totals=False`` leaves the order's changed running
    total for the caller's next ``Order.save_fields`` (or
    ``save_held_totals``), so the order row is written once. The caller ends
    its unit of work with ``orders.attention.refresh_attention`` (the row and
    the totals are what most attention rules read), once, whatever else it
    wrote.
    """
    state = current_audit()
    row = PaymentTransaction(
        order=order,
        payment_method_id=order.payment_method_id,
        kind=kind,
        amount=amount,
        currency=order.currency,
        reference=reference,
        event=gateway_event,
        created_by=state.user,
        channel=state.channel or Channel.SYSTEM,
    )
    # One INSERT ... ON CONFLICT DO NOTHING: no look-up before it and no
    # savepoint around it; a concurrent writer of the same reference waits
    # for the first to commit, then inserts nothing.
    if insert_unless_present(row, "ledger_reference_once_per_method_and_kind") is None:
        # Recorded already: reported before, or by another order's lock holder.
        existing = PaymentTransaction.objects.select_related("order").get(
            payment_method_id=order.payment_method_id, kind=kind, reference=reference
        )
        return existing, False
    total_field, sign = RUNNING_TOTAL.get(kind, ("", 0))
    if total_field:
        # Keep the order's running total in step with the ledger, in the same
        # transaction. update() writes no history row: money moving without a
        # status change is in the ledger, not in the status history.
        # The caller holds the row lock, so the value read with it is current.
        new_total = money(getattr(order, total_field) + sign * amount)
        if new_total < 0:
            # The callers check the balance first; the database refuses it too.
            raise InvalidPaymentEvent(
                _("Recording %(amount)s would take the order's %(total)s below zero.")
                % {"amount": format_money(amount, order.currency), "total": total_field}
            )
        if new_total >= STORAGE_LIMIT:
            # Raised inside the caller's transaction: the ledger row goes too.
            raise InvalidPaymentEvent(
                _("Recording %(amount)s would take the order's %(total)s past what can be stored.")
                % {"amount": format_money(amount, order.currency), "total": total_field}
            )
        setattr(order, total_field, new_total)
        if save_totals:
            Order.objects.filter(pk=order.pk).update(**{total_field: new_total})
        else:
            order._hold_total(total_field)
    return row, True
