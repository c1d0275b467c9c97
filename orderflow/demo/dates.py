"""
Dates along each demo order's story.

An order is placed some time in the last 30 days; its later steps (a
callback, a capture at shipping, a cheque in the post, a refund) come
minutes, hours or days after, never after the moment the demo is loaded.
The services stamp the current time, as they must: ``as_of`` re-dates what a
demo step wrote, in the demo only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from orders.models import Order
from payments.models import GatewayEvent, PaymentMethod, PaymentTransaction

SET_UP = timedelta(days=31)
"""How long before the demo's end the payment methods were set up: before
the oldest demo order (30 days at most)."""

# How long after the previous step each later step happens, when the order
# is old enough; a younger order's story is compressed (``StoryClock``).
GATEWAY_ANSWER = timedelta(minutes=2)
"""A gateway confirming or refusing a checkout."""
REDELIVERY = timedelta(seconds=40)
"""A gateway delivering the same callback again."""
SAME_DAY = timedelta(hours=5)
"""Staff or the customer acting on the day (a phone call, a void)."""
SHIPPING = timedelta(hours=20)
"""An authorization captured when the goods ship."""
IN_THE_POST = timedelta(days=4)
"""A cheque in the post, a wire transfer between banks."""
RETURNS = timedelta(days=6)
"""Goods sent back and refunded."""
CLEAN_UP = timedelta(days=7)
"""The nightly job cancelling checkouts with no answer for a week."""


class StoryClock:
    """
    The time of each step of one order's story, from its placement on.

    Each step comes ``delay`` after the previous one, or halfway to ``now``
    when the whole delay does not fit before it (a recent order): steps stay
    in story order and before ``now``, however recent the order.
    """

    def __init__(self, placed_at: datetime, *, now: datetime) -> None:
        self.placed_at = self.time = placed_at
        self.now = now

    def after(self, delay: timedelta) -> datetime:
        room = self.now - self.time
        self.time += delay if delay < room else room / 2
        return self.time


def _last_pk(rows) -> int:
    return rows.aggregate(last=Max("pk"))["last"] or 0


@contextmanager
def as_of(when: datetime) -> Iterator[None]:
    """
    Run one demo step, then date what it wrote ``when`` instead of now.

    The services stamp the current time, as they must. Afterwards, the rows
    the step created (ledger rows, gateway events, the history records of
    orders and payment methods) and the
    events it processed are re-dated with queryset updates, and the orders
    it changed get ``when`` as their last update. Demo data only: steps run
    one at a time, so "created by this step" is "newer than before it".
    """
    started = timezone.now()
    ledger = _last_pk(PaymentTransaction.objects)
    events = _last_pk(GatewayEvent.objects)
    history = _last_pk(Order.history)
    method_history = _last_pk(PaymentMethod.history)
    yield
    PaymentMethod.history.filter(history_id__gt=method_history).update(history_date=when)
    PaymentTransaction.objects.filter(pk__gt=ledger).update(created_at=when)
    GatewayEvent.objects.filter(pk__gt=events).update(received_at=when)
    GatewayEvent.objects.filter(processed_at__gte=started).update(processed_at=when)
    records = Order.history.filter(history_id__gt=history)
    Order.objects.filter(pk__in=records.values("id")).update(updated_at=when)
    records.update(history_date=when)
