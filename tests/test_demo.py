"""The demo data, loaded without the command: stories end as planned, dated in story order."""

from collections import Counter
from datetime import timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from orderflow.demo.dates import CLEAN_UP, GATEWAY_ANSWER, IN_THE_POST, SHIPPING, StoryClock
from orderflow.demo.load import load_demo_data
from orderflow.demo.plan import SCENARIOS, build_plan
from orders.models import Order
from orders.models import PaymentStatus as S
from payments.models import GatewayEvent, PaymentMethod, PaymentTransaction, TransactionKind

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("staff_groups")]

EVERY_SCENARIO = len(SCENARIOS)
"""The first round of the plan plays each scenario once."""


def test_demo_data_loads_without_argv_or_debug():
    summary = load_demo_data(orders=EVERY_SCENARIO)

    plans = build_plan(EVERY_SCENARIO)
    assert (summary.orders_created, summary.orders_present) == (EVERY_SCENARIO, 0)
    assert summary.numbers == tuple(plan.number for plan in plans)
    assert summary.status_counts == Counter(plan.scenario.status for plan in plans)
    assert set(summary.status_counts) == set(S.values)
    assert set(summary.attention) == {plan.number for plan in plans if plan.attention}
    user = get_user_model().objects.get(username=summary.username)
    assert user.is_superuser and user.check_password(summary.password)


def test_every_step_is_dated_along_its_orders_story():
    # The stories end an hour before the real clock: anything stamped with
    # the moment of loading instead of its step's time lands after ``now``.
    now = timezone.now() - timedelta(hours=1)

    load_demo_data(orders=EVERY_SCENARIO, now=now)

    for order in Order.objects.all():
        placed = order.placed_at
        assert now - timedelta(days=30) <= placed < now, order.number
        history = list(order.history.order_by("history_id").values_list("history_date", flat=True))
        assert history[0] == placed, order.number
        # One status change a step, each step later than the one before.
        assert all(a < b for a, b in pairwise(history)), order.number
        assert history[-1] < now, order.number
        assert order.updated_at == history[-1], order.number
        ledger = list(order.transactions.order_by("id").values_list("created_at", flat=True))
        assert all(placed <= when < now for when in ledger), order.number
        assert ledger == sorted(ledger), order.number
        for received, processed in order.gateway_events.values_list("received_at", "processed_at"):
            assert placed < received <= processed < now, order.number


def test_later_steps_come_minutes_hours_or_days_after_placement():
    now = timezone.now()
    plans = {p.scenario.key: p for p in build_plan(EVERY_SCENARIO)}

    load_demo_data(orders=EVERY_SCENARIO, now=now)

    for key, delay in [
        ("pending_authorized", GATEWAY_ANSWER),
        ("auth_captured", SHIPPING),
        ("offline_paid", IN_THE_POST),
        ("abandoned_cancelled", CLEAN_UP),
    ]:
        plan = plans[key]
        assert plan.age > delay, key  # old enough for the whole delay
        placed, changed = (
            Order.objects.get(number=plan.number)
            .history.order_by("history_id")
            .values_list("history_date", flat=True)[:2]
        )
        assert changed - placed == delay, key


def test_a_story_too_long_for_a_recent_order_is_compressed_before_now():
    now = timezone.now()
    clock = StoryClock(now - timedelta(minutes=10), now=now)

    paid = clock.after(timedelta(days=4))
    refunded = clock.after(timedelta(days=6))

    assert paid == now - timedelta(minutes=5)
    assert refunded == now - timedelta(minutes=2, seconds=30)


def test_a_delay_that_fits_before_now_is_kept_whole():
    now = timezone.now()
    clock = StoryClock(now - timedelta(days=9), now=now)

    paid = clock.after(timedelta(days=4))
    refunded = clock.after(timedelta(days=6))  # 5 days left: halfway

    assert paid == now - timedelta(days=5)
    assert refunded == now - timedelta(days=2, hours=12)


def test_offline_money_is_recorded_by_staff_as_ledger_rows():
    plans = {p.scenario.key: p for p in build_plan(EVERY_SCENARIO)}

    load_demo_data(orders=EVERY_SCENARIO)

    for key, status in [
        ("offline_paid", S.PAID),
        ("offline_part_paid", S.PARTIALLY_PAID),
        ("offline_refunded", S.REFUNDED),
    ]:
        plan = plans[key]
        order = Order.objects.get(number=plan.number)
        assert order.status == status and not order.needs_attention, key
        prefix = "CHK" if plan.method == "check" else "WIRE"
        capture = order.transactions.get(kind=TransactionKind.CAPTURE)
        assert capture.reference == f"{prefix}-{plan.number}"
        assert (capture.channel, capture.created_by.username) == ("admin", "demo")
        paid = order.history.exclude(status=S.AWAITING_PAYMENT).order_by("history_id").first()
        assert (paid.channel, paid.history_user.username) == ("admin", "demo")
        assert not GatewayEvent.objects.filter(order=order).exists()
    refunded = Order.objects.get(number=plans["offline_refunded"].number)
    refund = refunded.transactions.get(kind=TransactionKind.REFUND)
    assert refund.reference.endswith("-R1") and refund.amount == refunded.total
    assert refunded.net_paid_amount == Decimal(0)
    # Marking an order paid without the money is still the override's story.
    marked = Order.objects.get(number=plans["offline_marked_paid"].number)
    assert not PaymentTransaction.objects.filter(order=marked).exists()
    assert marked.needs_attention


def test_no_demo_record_carries_the_moment_of_loading():
    # The stories end an hour before the real clock, so a date stamped at
    # loading time (the services' own clock) would be after ``now``.
    now = timezone.now() - timedelta(hours=1)

    load_demo_data(orders=EVERY_SCENARIO, now=now)

    first_placed = Order.objects.earliest("placed_at").placed_at
    dates = {
        "order history": list(Order.history.values_list("history_date", flat=True)),
        "ledger": list(PaymentTransaction.objects.values_list("created_at", flat=True)),
        "events received": list(GatewayEvent.objects.values_list("received_at", flat=True)),
        "events processed": list(GatewayEvent.objects.values_list("processed_at", flat=True)),
        "orders updated": list(Order.objects.values_list("updated_at", flat=True)),
    }
    assert GatewayEvent.objects.exists() and PaymentTransaction.objects.exists()
    late = {name: max(when) for name, when in dates.items() if max(when) >= now}
    assert late == {}
    # The payment methods were set up before the first order was placed.
    method_dates = list(PaymentMethod.history.values_list("history_date", flat=True))
    assert method_dates and max(method_dates) < first_placed


def test_each_orders_story_runs_in_order_after_its_placement():
    now = timezone.now()

    load_demo_data(orders=EVERY_SCENARIO, now=now)

    spread = set()
    for order in Order.objects.all():
        steps = sorted(
            [
                *order.history.values_list("history_date", flat=True),
                *order.transactions.values_list("created_at", flat=True),
                *order.gateway_events.values_list("received_at", flat=True),
            ]
        )
        assert steps[0] == order.placed_at, order.number
        for event in order.gateway_events.all():
            # A callback's ledger row is written when the callback is processed.
            for row in event.transactions.all():
                assert event.received_at <= row.created_at <= event.processed_at, order.number
        spread.update(steps)
    # Dated along the stories, not one instant for everything.
    assert len(spread) > EVERY_SCENARIO
