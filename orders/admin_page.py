"""
What the order change page shows: header, attention, totals, actions, tables, timeline.

Each block is read with a fixed number of queries, whatever the number of
ledger rows, gateway events or history records, so the page stays as fast
for an order with a long past as for a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.http import Http404
from django.urls import reverse
from django.utils.translation import gettext as _

from orderflow.audit import Channel
from orderflow.money import ZERO, format_money, money
from orders.admin_display import status_badge
from orders.models import ATTENTION_RULES, Order, PaymentStatus
from payments.availability import (
    CHANGE_STATUS,
    MoneyAction,
    MoneyActions,
    held_from,
    money_actions,
    outstanding_amount,
)
from payments.models import (
    REPLAYABLE_OUTCOMES,
    EventOutcome,
    GatewayEvent,
    PaymentTransaction,
    TransactionKind,
)

TIMELINE_PAGE_SIZE = 50
TIMELINE_PARAM = "timeline"

ACKNOWLEDGE_PERMISSION = "payments.acknowledge_gatewayevent"
REPLAY_PERMISSION = "payments.replay_gatewayevent"

# The attention rules that a gateway event raises, and the events concerned.
EVENT_RULES = {
    "ignored_event": lambda events: events.ignored_facts(),
    "conflicting_event": lambda events: events.awaiting_acknowledgement(EventOutcome.CONFLICT),
    "dispute_lost": lambda events: events.unacknowledged_dispute_losses(),
    "unfinished_event": lambda events: events.unfinished(),
}


@dataclass
class AttentionItem:
    message: str
    events: list[EventFix] = field(default_factory=list)


@dataclass
class EventFix:
    """A gateway event behind an attention reason, and what staff may do about it."""

    event: GatewayEvent
    url: str
    acknowledge_url: str = ""
    replay_url: str = ""


@dataclass
class TimelineEntry:
    when: Any
    placed: bool
    from_status: str
    to_status: str
    who: str
    channel: str
    reason: str


@dataclass
class Timeline:
    entries: list[TimelineEntry]
    page: int
    pages: int
    count: int

    @property
    def previous_page(self) -> int | None:
        return self.page - 1 if self.page > 1 else None

    @property
    def next_page(self) -> int | None:
        return self.page + 1 if self.page < self.pages else None


def order_page_context(request, order: Order) -> dict[str, Any]:
    """Return the context the order change page template reads."""
    user = request.user
    ledger = list(
        PaymentTransaction.objects.filter(order=order)
        .select_related("created_by")
        .order_by("-created_at", "-id")
    )
    events = list(GatewayEvent.objects.filter(order=order).order_by("-received_at", "-id"))
    held = _held(order, ledger)
    actions = money_actions(order, user, held=held)
    return {
        "title": _("Order %(number)s") % {"number": order.number},
        "subtitle": None,
        "status_badge": status_badge(order.status),
        "attention_items": attention_items(order, user),
        "totals": totals(order, held),
        "money_actions": actions,
        "action_buttons": _action_buttons(order, actions),
        "ledger_rows": [_ledger_row(row) for row in ledger],
        "event_rows": [_event_row(event, order.currency) for event in events],
        "timeline": timeline(order, request.GET.get(TIMELINE_PARAM)),
        "timeline_param": TIMELINE_PARAM,
    }


def _held(order: Order, ledger: list[PaymentTransaction]) -> Decimal:
    authorized = sum(
        (r.amount for r in ledger if r.kind == TransactionKind.AUTHORIZATION), start=ZERO
    )
    voided = sum((r.amount for r in ledger if r.kind == TransactionKind.VOID), start=ZERO)
    return held_from(money(authorized), money(voided), order)


def totals(order: Order, held: Decimal) -> list[tuple[str, str]]:
    """The order's money as (label, amount) pairs, in the currency's own decimals."""
    currency = order.currency
    rows = [
        (_("Total"), order.total),
        (_("Authorized (held)"), held),
        (_("Captured"), order.captured_amount),
        (_("Refunded"), order.refunded_amount),
    ]
    if order.disputed_amount or order.dispute_status:
        rows.append((_("Disputed"), order.disputed_amount))
    # A closed order (refunded, cancelled, declined) waits for no money: its
    # "total less kept" is not owed by anyone, so it is not shown as outstanding.
    closed = order.status in CLOSED_STATUSES
    rows += [
        (_("Kept"), order.kept_amount),
        (_("Outstanding"), None if closed else outstanding_amount(order)),
    ]
    return [
        (label, "-" if amount is None else format_money(amount, currency)) for label, amount in rows
    ]


CLOSED_STATUSES = frozenset(
    {PaymentStatus.REFUNDED, PaymentStatus.CANCELLED, PaymentStatus.DECLINED}
)


def attention_items(order: Order, user: Any) -> list[AttentionItem]:
    """Each reason the order needs attention, with the events to acknowledge or replay."""
    row = order
    if "attention_flag" not in order.__dict__:
        row = Order.objects.with_attention().get(pk=order.pk)
    flagged = [rule.code for rule in ATTENTION_RULES if getattr(row, f"attention_{rule.code}")]
    # attention_reasons lists the flagged rules' messages in ATTENTION_RULES order.
    items = [
        AttentionItem(message, _event_fixes(order, code, user))
        for code, message in zip(flagged, row.attention_reasons, strict=True)
    ]
    items += [AttentionItem(message) for message in order.ledger_mismatch_reasons()]
    return items


def _event_fixes(order: Order, code: str, user: Any) -> list[EventFix]:
    select = EVENT_RULES.get(code)
    if select is None:
        return []
    may_acknowledge = user.has_perm(ACKNOWLEDGE_PERMISSION)
    may_replay = user.has_perm(REPLAY_PERMISSION)
    fixes = []
    for event in select(GatewayEvent.objects.filter(order=order)).order_by("received_at", "id"):
        fix = EventFix(event, reverse("admin:payments_gatewayevent_change", args=[event.pk]))
        if code == "unfinished_event":
            if may_replay and event.outcome in REPLAYABLE_OUTCOMES:
                fix.replay_url = reverse(
                    "admin:orders_order_replay_event", args=[order.pk, event.pk]
                )
        elif may_acknowledge:
            fix.acknowledge_url = reverse(
                "admin:orders_order_acknowledge_event", args=[order.pk, event.pk]
            )
        fixes.append(fix)
    return fixes


def _action_buttons(order: Order, actions: MoneyActions) -> list[tuple[MoneyAction, str]]:
    """The allowed actions with the page each one is taken on."""
    return [
        (
            action,
            action.url
            if action.name == CHANGE_STATUS
            else reverse(f"admin:orders_order_{action.name}", args=[order.pk]),
        )
        for action in actions.allowed
    ]


def _ledger_row(row: PaymentTransaction) -> dict[str, Any]:
    return {
        "row": row,
        "kind": row.get_kind_display(),
        "amount": format_money(row.amount, row.currency),
        "who": _who(row.created_by, row.channel),
        "channel": _channel_label(row.channel) or "-",
        "url": reverse("admin:payments_paymenttransaction_change", args=[row.pk]),
    }


def _event_row(event: GatewayEvent, currency: str) -> dict[str, Any]:
    return {
        "event": event,
        "outcome": event.get_outcome_display(),
        "amount": "" if event.amount is None else format_money(event.amount, currency),
        "url": reverse("admin:payments_gatewayevent_change", args=[event.pk]),
    }


def _who(user: Any, channel: str) -> str:
    """The user, or where the change came from when no user made it ("gateway")."""
    if user is not None:
        return str(user)
    return _channel_label(channel).lower() or "-"


def _channel_label(value: str) -> str:
    if not value:
        return ""
    try:
        return str(Channel(value).label)
    except ValueError:
        return value


def _status(value: str | None) -> str:
    """A status as its badge (its label), or "-" when there is none."""
    return status_badge(value) if value else "-"


def timeline_page(raw: str | None) -> int:
    """The timeline page asked for: anything that is not a positive number is page 1."""
    try:
        page = int(raw) if raw is not None else 1
    except (TypeError, ValueError):
        return 1
    return page if page >= 1 else 1


def timeline(order: Order, raw_page: str | None) -> Timeline:
    """
    The order's history records, newest first, a page at a time.

    Two queries whatever the number of records: the count, and the page with
    one record more, the one before the page's oldest, to say where it came from.
    Raise Http404 for a page past the last.
    """
    records = order.history.select_related("history_user").order_by("-history_date", "-history_id")
    count = records.count()
    pages = max(1, -(-count // TIMELINE_PAGE_SIZE))
    page = timeline_page(raw_page)
    if page > pages:
        raise Http404(_("The timeline has no page %(page)s.") % {"page": page})
    start = (page - 1) * TIMELINE_PAGE_SIZE
    rows = list(records[start : start + TIMELINE_PAGE_SIZE + 1])
    entries = []
    for index, record in enumerate(rows[:TIMELINE_PAGE_SIZE]):
        older = rows[index + 1] if index + 1 < len(rows) else None
        placed = record.history_type == "+"
        channel = _channel_label(record.channel)
        entries.append(
            TimelineEntry(
                when=record.history_date,
                placed=placed,
                from_status="-" if placed or older is None else _status(older.status),
                to_status=_status(record.status),
                who=_who(record.history_user, record.channel),
                channel=channel or "-",
                reason=record.history_change_reason or "",
            )
        )
    return Timeline(entries, page, pages, count)
