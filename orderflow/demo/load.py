"""
Loading the demo data: payment methods, the planned orders, a superuser and
one staff user per staff group.

Idempotent: orders already present are skipped, payment methods are only
changed where they differ. The demo users get a new random password on
every load (the same for all of them), returned for the command to print.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Count
from django.utils import timezone

from orderflow.audit import Channel, audit_context
from orderflow.demo import DemoDataError
from orderflow.demo.dates import SET_UP, as_of
from orderflow.demo.plan import (
    DEFAULT_ORDERS,
    DEFAULT_SEED,
    PAYMENT_METHODS,
    OrderPlan,
    build_plan,
)
from orderflow.demo.play import DemoOrders
from orders.models import Order
from payments.models import PaymentMethod

DEMO_USERNAME = "demo"
# One demo user per staff group (created by orders' staff groups migration),
# to walk the admin as each role.
ROLE_USERS: dict[str, str] = {
    "viewer": "Order viewer",
    "clerk": "Payments clerk",
    "manager": "Payments manager",
}


@dataclass(frozen=True)
class DemoSummary:
    """What loading the demo data did, for the command to print."""

    methods_created: int
    methods_present: int
    numbers: tuple[str, ...]
    """The demo orders' numbers, in plan order."""
    orders_created: int
    orders_present: int
    status_counts: dict[str, int]
    attention: tuple[str, ...]
    """Numbers of the demo orders that need attention (on purpose)."""
    username: str
    password: str
    """The demo superuser's new password: it changes on every load."""
    user_created: bool
    role_users: tuple[tuple[str, str], ...] = ()
    """(username, group) of the demo staff users; they share the superuser's password."""


def load_demo_data(
    *, orders: int = DEFAULT_ORDERS, seed: int = DEFAULT_SEED, now: datetime | None = None
) -> DemoSummary:
    """
    Create the demo payment methods, the first ``orders`` demo orders and a
    ``demo`` superuser with a new random password; return what was done.

    Orders already present are left alone. ``now`` is the moment the stories
    end (default: now). Raise DemoDataError when an order does not end as
    planned. For local demos only: the superuser's password is returned.
    """
    plans = build_plan(orders, seed)
    now = now or timezone.now()
    with audit_context(channel=Channel.COMMAND, user=None, reason="Demo data (seed_demo)."):
        with as_of(now - SET_UP):
            methods, methods_created = set_up_payment_methods()
        user, password, user_created = set_up_demo_user()
        role_users = set_up_role_users(password)
        created, present = create_orders(
            plans, DemoOrders(methods=methods, staff_user=user, now=now)
        )

    numbers = tuple(plan.number for plan in plans)
    demo_orders = Order.objects.filter(number__in=numbers)
    counts = dict(demo_orders.values_list("status").annotate(n=Count("id")).order_by())
    attention = set(demo_orders.needing_attention().values_list("number", flat=True))
    check_attention(created, attention)
    return DemoSummary(
        methods_created=methods_created,
        methods_present=len(methods) - methods_created,
        numbers=numbers,
        orders_created=len(created),
        orders_present=present,
        status_counts=counts,
        attention=tuple(sorted(attention)),
        username=user.get_username(),
        password=password,
        user_created=user_created,
        role_users=role_users,
    )


def set_up_payment_methods() -> tuple[dict[str, PaymentMethod], int]:
    """Return the demo payment methods by code, and how many were created."""
    methods: dict[str, PaymentMethod] = {}
    created = 0
    for code, fields in PAYMENT_METHODS.items():
        method = PaymentMethod.objects.filter(code=code).first()
        if method is None:
            method = PaymentMethod(code=code, **fields)
            if method.is_online:
                method.webhook_secret = secrets.token_urlsafe(32)
            method.save()
            created += 1
        else:
            # Save only what differs, so a second run writes no history.
            changed = [name for name, value in fields.items() if getattr(method, name) != value]
            for name in changed:
                setattr(method, name, fields[name])
            if method.is_online and not method.webhook_secret:
                method.webhook_secret = secrets.token_urlsafe(32)
                changed.append("webhook_secret")
            if changed:
                method.save(update_fields=changed)
        methods[code] = method
    return methods, created


def set_up_demo_user() -> tuple[Any, str, bool]:
    """Return the demo superuser, its new password, and whether it was created."""
    user_model = get_user_model()
    user, created = user_model._default_manager.get_or_create(
        **{user_model.USERNAME_FIELD: DEMO_USERNAME},
        defaults={"email": "demo@example.com"},
    )
    user.is_active = True
    user.is_staff = True
    user.is_superuser = True
    password = secrets.token_urlsafe(12)
    user.set_password(password)
    user.save()
    return user, password, created


def set_up_role_users(password: str) -> tuple[tuple[str, str], ...]:
    """Give each staff group a demo user (staff, not superuser) with ``password``."""
    groups = {group.name: group for group in Group.objects.filter(name__in=ROLE_USERS.values())}
    missing = sorted(set(ROLE_USERS.values()) - set(groups))
    if missing:
        raise DemoDataError(
            "The staff groups are missing (" + ", ".join(missing) + "): orders' staff "
            "groups migration creates them."
        )
    user_model = get_user_model()
    for username, group_name in ROLE_USERS.items():
        user, _ = user_model._default_manager.get_or_create(
            **{user_model.USERNAME_FIELD: username},
            defaults={"email": f"{username}@example.com"},
        )
        user.is_active = True
        user.is_staff = True
        user.is_superuser = False
        user.set_password(password)
        user.save()
        # Exactly the one group: the user shows what that role may do.
        user.groups.set([groups[group_name]])
        user.user_permissions.clear()
    return tuple(ROLE_USERS.items())


def create_orders(plans: list[OrderPlan], demo: DemoOrders) -> tuple[list[OrderPlan], int]:
    """Play the plans not played yet; return those created and how many were present."""
    numbers = [plan.number for plan in plans]
    present = set(Order.objects.filter(number__in=numbers).values_list("number", flat=True))
    created: list[OrderPlan] = []
    for plan in plans:
        if plan.number in present:
            continue
        # Each step is its own unit of work, as in production: a callback
        # is stored in a durable transaction of its own before processing.
        order = demo.play(plan)
        if order.status != plan.scenario.status:
            raise DemoDataError(
                f"Demo order {plan.number} ({plan.scenario.key}) ended {order.status}, "
                f"not {plan.scenario.status}."
            )
        created.append(plan)
    return created, len(present)


def check_attention(created: list[OrderPlan], attention: set[str]) -> None:
    """Refuse demo data that does not tell the story it was meant to."""
    wrong = sorted(plan.number for plan in created if plan.attention != (plan.number in attention))
    if wrong:
        raise DemoDataError(
            "These demo orders do not need attention as planned (check the attention "
            "rules in orders.models): " + ", ".join(wrong)
        )
