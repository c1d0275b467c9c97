"""
Set one payment status on many orders, set-based: the ``set_payment_status`` command's work.

The rules are those of :func:`orders.services.override_status` (through
:func:`orders.services.check_override`), applied to a batch of orders at a
time instead of one transaction, one lock, one django-fsm save and one
history save per order. Each batch is one transaction that

1. locks the batch's rows (``SELECT ... FOR UPDATE``, in primary-key order)
   and reads them, so a callback that committed before the lock is seen and
   one that arrives later waits for the commit;
2. decides for each order with the same rules as the single path (already
   there, discouraged, permission), and, for a selection by status, leaves
   alone an order whose status moved out of the selection meanwhile;
3. writes the new status of the changed orders with one queryset update,
   one history record per changed order with one ``bulk_create``, and
   refreshes their stored attention.

A failing batch is rolled back alone and reported; the batches before it
stay committed. Running the same selection again changes nothing: the
orders are already in the target status. Only counts and the first
``EXAMPLES`` orders of each result are kept, whatever the number of orders.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import QuerySet
from django.dispatch import Signal
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from orderflow.audit import Channel, current_audit
from orders.attention import refresh_attention_of
from orders.exceptions import AlreadyInStatus, DiscouragedTransition, InvalidOrder
from orders.models import Order, PaymentStatus
from orders.services import OverrideResult, check_override

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
EXAMPLES = 20
"""How many orders of each result a summary names."""

batch_locked = Signal()
"""Sent with ``pks`` once a batch's rows are locked, before anything is written."""

# The history columns copied from the order (simple-history's tracked fields).
_HISTORY = Order.history.model
_COLUMNS = [f.attname for f in _HISTORY.tracked_fields]
_PK, _NUMBER, _STATUS = (_COLUMNS.index(name) for name in ("id", "number", "status"))


class BulkResult:
    """What the set-based path did with one order, besides :class:`OverrideResult`."""

    SKIPPED_STATUS = "skipped_status"
    """Selected by its status, which changed before its batch was locked: left alone."""
    EXCLUDED = "excluded"
    """Named in the list, but not matched by the filters: left alone."""


LABELS = {
    OverrideResult.CHANGED: _lazy("changed"),
    OverrideResult.ALREADY: _lazy("already in target"),
    BulkResult.SKIPPED_STATUS: _lazy("skipped: status changed"),
    BulkResult.EXCLUDED: _lazy("not matching the filters"),
    OverrideResult.DISCOURAGED: _lazy("refused as discouraged"),
    OverrideResult.PERMISSION: _lazy("refused: not allowed"),
    OverrideResult.NOT_FOUND: _lazy("not found"),
    OverrideResult.FAILED: _lazy("failed"),
}
"""Every result of a bulk run, in the order a summary lists them."""

PROBLEMS = frozenset(
    {
        OverrideResult.DISCOURAGED,
        OverrideResult.PERMISSION,
        OverrideResult.NOT_FOUND,
        OverrideResult.FAILED,
    }
)
"""Results that make a run unsuccessful: something selected was not done."""


@dataclass(frozen=True)
class Selection:
    """
    Which orders to change: a list of numbers (streamed; None for no list),
    narrowed by the filters that are set.
    """

    numbers: Iterable[str] | None = None
    statuses: tuple[str, ...] = ()
    method_id: int | None = None
    placed_before: datetime | None = None

    @property
    def has_filters(self) -> bool:
        return bool(self.statuses) or self.method_id is not None or self.placed_before is not None

    def filtered(self, queryset: QuerySet[Order] | None = None) -> QuerySet[Order]:
        """Return the orders the filters match (every order without filters)."""
        queryset = Order.objects.all() if queryset is None else queryset
        if self.statuses:
            queryset = queryset.filter(status__in=self.statuses)
        if self.method_id is not None:
            queryset = queryset.filter(payment_method_id=self.method_id)
        if self.placed_before is not None:
            queryset = queryset.filter(placed_at__lt=self.placed_before)
        return queryset


@dataclass(frozen=True)
class Line:
    """One order named in a summary."""

    number: str
    old_status: str = ""
    message: str = ""


@dataclass
class BulkSummary:
    """Counts of each result, and the first ``EXAMPLES`` orders of each."""

    new_status: str
    dry_run: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[Line]] = field(default_factory=dict)
    failed_batches: int = 0

    def add(self, result: str, line: Line) -> None:
        self.counts[result] += 1
        kept = self.examples.setdefault(result, [])
        if len(kept) < EXAMPLES:
            kept.append(line)

    def more(self, result: str) -> int:
        """Return how many orders of ``result`` the examples leave out."""
        return self.counts[result] - len(self.examples.get(result, []))

    @property
    def selected(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> bool:
        """True when every order selected was changed, already there or left alone on purpose."""
        return not any(self.counts[result] for result in PROBLEMS)


def stream_pks(queryset: QuerySet[Order], *, chunk_size: int) -> Iterator[int]:
    """
    Yield the ids of ``queryset`` in primary-key order, as evaluated now.

    On PostgreSQL a server-side cursor streams them (declared WITH HOLD
    outside a transaction, so it outlives the batches' commits and keeps
    the selection as it was when the run started). SQLite has no
    isolation between a cursor and writes on the same connection, so the
    ids are read first there; it is the demo and test database.
    """
    ids = queryset.order_by("pk").values_list("pk", flat=True)
    if connection.vendor == "postgresql":
        yield from ids.iterator(chunk_size=chunk_size)
    else:
        yield from list(ids)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def selected_batches(
    selection: Selection, summary: BulkSummary, *, batch_size: int
) -> Iterator[list[int]]:
    """
    Yield the ids to change, a batch at a time, each batch in primary-key order.

    A list is read ``batch_size`` numbers at a time: numbers without an
    order are counted as not found, orders the filters do not match as
    excluded. Without a list, the filters' ids are streamed in
    primary-key order.
    """
    if selection.numbers is None:
        if not selection.has_filters:
            raise InvalidOrder(_("Select orders by number or by a filter; none was given."))
        pks = stream_pks(selection.filtered(), chunk_size=batch_size)
        yield from _chunks(pks, batch_size)
        return
    for chunk in _chunks(selection.numbers, batch_size):
        numbers = list(dict.fromkeys(chunk))
        found = dict(Order.objects.filter(number__in=numbers).values_list("number", "pk"))
        for number in numbers:
            if number not in found:
                summary.add(
                    OverrideResult.NOT_FOUND,
                    Line(number, message=_("There is no order numbered %(n)s.") % {"n": number}),
                )
        if selection.has_filters and found:
            matched = set(
                selection.filtered(Order.objects.filter(pk__in=found.values())).values_list(
                    "pk", flat=True
                )
            )
            for number, pk in found.items():
                if pk not in matched:
                    summary.add(BulkResult.EXCLUDED, Line(number))
        else:
            matched = set(found.values())
        if matched:
            yield sorted(matched)


@dataclass(frozen=True)
class _Decision:
    result: str
    record: str = ""
    message: str = ""


def _decide(old: str, new_status: str, *, user: Any, reason: str, allow: bool) -> _Decision:
    # check_override reads the status and the user only, so one decision per
    # status found in the batch is the decision for each of its orders.
    probe = Order(status=old, number="")
    try:
        record = check_override(
            probe, new_status, user=user, reason=reason, allow_discouraged=allow
        )
    except AlreadyInStatus:
        return _Decision(OverrideResult.ALREADY)
    except DiscouragedTransition as exc:
        return _Decision(OverrideResult.DISCOURAGED, message=exc.reason)
    except PermissionDenied as exc:
        return _Decision(OverrideResult.PERMISSION, message=str(exc))
    return _Decision(OverrideResult.CHANGED, record=record)


def _apply_batch(
    pks: list[int],
    new_status: str,
    summary: BulkSummary,
    *,
    user: Any,
    reason: str,
    allow_discouraged: bool,
    statuses: tuple[str, ...],
    dry_run: bool,
) -> None:
    lines: list[tuple[str, Line]] = []
    with transaction.atomic():
        rows = Order.objects.filter(pk__in=pks).order_by("pk")
        if not dry_run:
            rows = rows.locking()
        rows = list(rows.values_list(*_COLUMNS))
        if not dry_run:
            batch_locked.send(sender=Order, pks=pks)
        decisions: dict[str, _Decision] = {}
        changed = []
        for row in rows:
            old = row[_STATUS]
            if statuses and old not in statuses and old != new_status:
                lines.append((BulkResult.SKIPPED_STATUS, Line(row[_NUMBER], old)))
                continue
            if old not in decisions:
                decisions[old] = _decide(
                    old, new_status, user=user, reason=reason, allow=allow_discouraged
                )
            decision = decisions[old]
            lines.append((decision.result, Line(row[_NUMBER], old, decision.message)))
            if decision.result == OverrideResult.CHANGED:
                changed.append(row)
        for pk in sorted(set(pks) - {row[_PK] for row in rows}):
            lines.append((OverrideResult.NOT_FOUND, Line(f"id {pk}")))
        if changed and not dry_run:
            _write(changed, new_status, decisions, user=user)
    # Counted once committed: a batch that fails is counted as failed instead.
    for result, line in lines:
        summary.add(result, line)


def _write(rows: list[tuple], new_status: str, decisions: dict[str, _Decision], *, user) -> None:
    pks = [row[_PK] for row in rows]
    now = timezone.now()
    # The status is a protected django-fsm field and a queryset update goes
    # around the instance's protection and the transition: acceptable here
    # because the rows are locked and check_override (the override
    # transition's rules) decided each change above. The history that a
    # save would record is written below, as simple-history would write it.
    Order.objects.filter(pk__in=pks).update(status=new_status, updated_at=now)
    audit = current_audit()
    channel = audit.channel or Channel.SYSTEM
    user_id = user.pk if user is not None else None
    records = []
    for row in rows:
        values = dict(zip(_COLUMNS, row, strict=True))
        values.update(status=new_status, updated_at=now)
        records.append(
            _HISTORY(
                **values,
                history_date=now,
                history_type="~",
                history_user_id=user_id,
                history_change_reason=decisions[row[_STATUS]].record,
                channel=channel,
            )
        )
    # Not simple-history's bulk_update_with_history: it needs model
    # instances, updates with one CASE per field, and leaves out the channel.
    _HISTORY.objects.bulk_create(records)
    refresh_attention_of(pks)


def set_statuses(
    selection: Selection,
    new_status: str,
    *,
    user: Any,
    reason: str,
    allow_discouraged: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> BulkSummary:
    """
    Override the status of the selected orders, a batch per transaction; return a summary.

    ``user=None`` is the trusted command channel; the history records take
    the channel from the audit context in force (``command`` for the
    command). With ``dry_run`` the same decisions are made on rows read
    without locks, and nothing is written. ``progress`` is called with the
    number of orders of each batch once it is done. Raise InvalidOrder,
    before touching anything, for an unknown status, a blank reason, an
    empty selection or a batch size below 1.
    """
    if new_status not in PaymentStatus.values:
        raise InvalidOrder(
            _("%(status)r is not a payment status; use one of: %(allowed)s.")
            % {"status": new_status, "allowed": ", ".join(PaymentStatus.values)}
        )
    for status in selection.statuses:
        if status not in PaymentStatus.values:
            raise InvalidOrder(
                _("%(status)r is not a payment status; use one of: %(allowed)s.")
                % {"status": status, "allowed": ", ".join(PaymentStatus.values)}
            )
    reason = (reason or "").strip()
    if not reason:
        raise InvalidOrder(_("A reason is required to change a status by hand."))
    if batch_size < 1:
        raise InvalidOrder(_("The batch size must be 1 or more."))

    summary = BulkSummary(new_status=new_status, dry_run=dry_run)
    for pks in selected_batches(selection, summary, batch_size=batch_size):
        try:
            _apply_batch(
                pks,
                new_status,
                summary,
                user=user,
                reason=reason,
                allow_discouraged=allow_discouraged,
                statuses=selection.statuses,
                dry_run=dry_run,
            )
        except Exception:
            # The batch is rolled back alone; the ones before it stay committed.
            logger.exception("Setting the status of a batch of %s orders failed", len(pks))
            summary.failed_batches += 1
            _count_failed(pks, summary)
        if progress is not None:
            progress(len(pks))
    return summary


def _count_failed(pks: list[int], summary: BulkSummary) -> None:
    message = _("The batch failed and was rolled back; nothing was changed for it.")
    try:
        numbers = dict(Order.objects.filter(pk__in=pks[:EXAMPLES]).values_list("pk", "number"))
    except Exception:  # the database may be what failed
        numbers = {}
    for pk in pks:
        summary.add(OverrideResult.FAILED, Line(numbers.get(pk, f"id {pk}"), message=message))
