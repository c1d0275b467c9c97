"""
Check the orders' running totals against the ledger.

``Order.captured_amount``, ``refunded_amount`` and ``disputed_amount`` are kept in step with
the ledger by ``payments.ledger.record_transaction``. Any other write to
them (a whole-row save of a stale order, a hand-edited row) makes the money
checks and the attention filter read wrong numbers; this finds such orders.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import F, QuerySet

from orderflow.money import format_money
from orders.models import Order


@dataclass(frozen=True)
class TotalsMismatch:
    """An order whose running totals are not the sums of its ledger rows."""

    number: str
    currency: str
    captured: Decimal
    ledger_captured: Decimal
    refunded: Decimal
    ledger_refunded: Decimal
    disputed: Decimal
    ledger_disputed: Decimal

    def __str__(self) -> str:
        def money(amount: Decimal) -> str:
            return format_money(amount, self.currency)

        line = (
            f"{self.number}: captured {money(self.captured)}, "
            f"ledger captures {money(self.ledger_captured)}; "
            f"refunded {money(self.refunded)}, ledger refunds {money(self.ledger_refunded)}"
        )
        if self.disputed or self.ledger_disputed:
            line += (
                f"; disputed {money(self.disputed)}, ledger disputes {money(self.ledger_disputed)}"
            )
        return line


def ledger_totals_mismatches(
    orders: QuerySet[Order] | None = None, *, chunk_size: int = 2000
) -> Iterator[TotalsMismatch]:
    """
    Yield each order whose running totals differ from its ledger's sums.

    One grouped query over all the orders (or ``orders``), streamed: the
    database compares, and only the orders that disagree come back.
    """
    queryset = orders if orders is not None else Order.objects.all()
    rows = (
        queryset.with_ledger_sums()
        .exclude(
            captured_amount=F("ledger_captured"),
            refunded_amount=F("ledger_refunded"),
            disputed_amount=F("ledger_disputed"),
        )
        .order_by("pk")
        .values_list(
            "number",
            "currency",
            "captured_amount",
            "ledger_captured",
            "refunded_amount",
            "ledger_refunded",
            "disputed_amount",
            "ledger_disputed",
        )
    )
    for row in rows.iterator(chunk_size=chunk_size):
        yield TotalsMismatch(*row)
