"""
The stored attention flag: ``Order.attention_code``.

``orders.models.ATTENTION_RULES`` say when an order needs attention. The
order list and its filter read the code of the first rule that holds from a
column instead of evaluating every rule over the whole table, so the column
must follow every change the rules read: the status, the running totals and
ledger rows, the dispute status and the gateway events linked to the order.

The services call ``refresh_attention`` at the end of each unit of work that
can change it, inside its transaction and under the order's row lock, so the
stored value commits (or rolls back) with the change. One rule depends on
the clock (an event left ``received`` counts as unfinished only after
``payments.models.STUCK_AFTER``): that one reaches the column when the event
is replayed or marked failed, or when ``check_ledger_totals --repair`` runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db.models import F, QuerySet

from orderflow.compiled import CompiledQuery, mark_int
from orders.models import Order

BATCH_SIZE = 1000

# The rules are a large expression: compiling them through the ORM costs
# more than running them, and every service runs them once per change.
_RULES = CompiledQuery(
    "attention_of_one_order",
    Order,
    lambda pk: (
        Order.objects.filter(pk=pk)
        .order_by()
        .with_computed_attention()
        .values_list("attention_code", "computed_attention")
    ),
    mark_int(0),
)


def _stored_and_computed(pk: int) -> tuple[str, str]:
    rows = _RULES.rows(pk)
    if not rows:
        raise Order.DoesNotExist(f"No order {pk}.")
    return rows[0]


def _lock(pks: list[int]) -> None:
    # Its own statement: under READ COMMITTED, the rules are then evaluated
    # in a later snapshot that sees what the previous lock holder committed.
    list(Order.objects.locking().filter(pk__in=pks).order_by("pk").values_list("pk"))


def refresh_attention(order: Order | int, *, lock: bool = False) -> str:
    """
    Store what the attention rules say about one order now; return the code.

    One query evaluates the rules for this order alone; the column is
    written, with a queryset update of that column only, when it changed.
    Call it inside the transaction that made the change, holding the order's
    row lock, or with ``lock=True`` to take it first (the rules must not be
    read from a snapshot older than another writer's commit).
    """
    pk = order.pk if isinstance(order, Order) else order
    if lock:
        _lock([pk])
    stored, computed = _stored_and_computed(pk)
    if stored != computed:
        Order.objects.filter(pk=pk).update(attention_code=computed)
    if isinstance(order, Order):
        order.attention_code = computed
    return computed


def refresh_attention_of(orders: QuerySet[Order] | Iterable[int], *, lock: bool = False) -> int:
    """
    Store what the rules say about many orders; return how many changed.

    ``orders`` is a queryset of orders or their ids. Only the orders whose
    stored code is wrong are read back and written, grouped by code.
    ``lock=True`` (with ids) locks their rows first, in id order.
    """
    if isinstance(orders, QuerySet):
        queryset = orders
    else:
        pks = sorted(set(orders))
        if lock:
            _lock(pks)
        queryset = Order.objects.filter(pk__in=pks)
    changed: dict[str, list[int]] = defaultdict(list)
    rows = (
        queryset.with_computed_attention()
        .exclude(attention_code=F("computed_attention"))
        .order_by()
        .values_list("pk", "computed_attention")
    )
    for pk, code in rows.iterator(chunk_size=BATCH_SIZE):
        changed[code].append(pk)
    for code, pks in changed.items():
        for start in range(0, len(pks), BATCH_SIZE):
            Order.objects.filter(pk__in=pks[start : start + BATCH_SIZE]).update(attention_code=code)
    return sum(len(pks) for pks in changed.values())


@dataclass(frozen=True)
class AttentionMismatch:
    """An order whose stored attention is not what the rules say now."""

    number: str
    stored: str
    computed: str

    def __str__(self) -> str:
        return (
            f"{self.number}: stored attention {self.stored or '(none)'}, "
            f"the rules say {self.computed or '(none)'}"
        )


def attention_mismatches(
    orders: QuerySet[Order] | None = None, *, chunk_size: int = 2000
) -> Iterator[AttentionMismatch]:
    """Yield each order whose stored attention differs from the rules, in one query."""
    queryset = orders if orders is not None else Order.objects.all()
    rows = (
        queryset.with_computed_attention()
        .exclude(attention_code=F("computed_attention"))
        .order_by("pk")
        .values_list("number", "attention_code", "computed_attention")
    )
    for row in rows.iterator(chunk_size=chunk_size):
        yield AttentionMismatch(*row)
