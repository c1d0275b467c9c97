"""
Which demo orders there are and how each one's payment story ends.

The plan is drawn from a fixed seed before anything is written: it depends
only on the seed, never on the database, so loading the demo is repeatable
and idempotent.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from orders.models import PaymentStatus
from payments.models import CaptureMode, PaymentMethodKind

S = PaymentStatus

DEFAULT_ORDERS = 60
DEFAULT_SEED = 1001
FIRST_NUMBER = 1001
CENT = Decimal("0.01")

_ONLINE_DEFAULTS = {
    "kind": PaymentMethodKind.ONLINE,
    "supports_refunds": True,
    "supports_partial_refunds": True,
    "is_active": True,
}
_OFFLINE_DEFAULTS = {
    "kind": PaymentMethodKind.OFFLINE,
    "gateway": "",
    "capture_mode": CaptureMode.SALE,
    "supports_refunds": False,
    "supports_partial_refunds": False,
    "is_active": True,
}

# Every field but the webhook secret, which is generated once and never replaced.
PAYMENT_METHODS: dict[str, dict[str, Any]] = {
    "check": {**_OFFLINE_DEFAULTS, "name": "Check / money order"},
    "wire": {**_OFFLINE_DEFAULTS, "name": "Wire transfer"},
    "testpay": {
        **_ONLINE_DEFAULTS,
        "name": "Test gateway",
        "gateway": "hmac",
        "capture_mode": CaptureMode.SALE,
    },
    "testpay-auth": {
        **_ONLINE_DEFAULTS,
        "name": "Test gateway (authorize only)",
        "gateway": "hmac",
        "capture_mode": CaptureMode.AUTH,
    },
    "stripe": {
        **_ONLINE_DEFAULTS,
        "name": "Stripe",
        "gateway": "stripe",
        "capture_mode": CaptureMode.AUTH,
    },
}

ONLINE = ("testpay", "testpay-auth", "stripe")
AUTH_ONLY = ("testpay-auth", "stripe")
OFFLINE = ("check", "wire")


@dataclass(frozen=True)
class Scenario:
    """One way an order's payment story can go."""

    key: str
    """Name of the ``DemoOrders`` method that plays it."""
    status: str
    """The status it ends in."""
    methods: tuple[str, ...]
    """Payment method codes it fits."""
    weight: int
    """How often it recurs after the first round; 0 plays it once only."""
    attention: bool = False
    """True when it deliberately leaves the order needing attention."""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("offline_awaiting", S.AWAITING_PAYMENT, OFFLINE, 4),
    Scenario("offline_paid", S.PAID, OFFLINE, 4),
    Scenario("offline_part_paid", S.PARTIALLY_PAID, ("wire",), 1),
    Scenario("offline_cancelled", S.CANCELLED, OFFLINE, 1),
    Scenario("offline_refunded", S.REFUNDED, OFFLINE, 1),
    Scenario("checkout_pending", S.AWAITING_PAYMENT, ONLINE, 3),
    Scenario("abandoned_cancelled", S.CANCELLED, ONLINE, 1),
    Scenario("sale_paid", S.PAID, ("testpay",), 4),
    Scenario("sale_part_paid", S.PARTIALLY_PAID, ("testpay",), 1),
    Scenario("sale_declined", S.DECLINED, ("testpay",), 2),
    Scenario("pending_declined", S.DECLINED, AUTH_ONLY, 1),
    Scenario("auth_held", S.AUTHORIZED, AUTH_ONLY, 4),
    Scenario("pending_authorized", S.AUTHORIZED, AUTH_ONLY, 1),
    Scenario("auth_captured", S.PAID, AUTH_ONLY, 3),
    Scenario("auth_part_captured", S.PARTIALLY_PAID, AUTH_ONLY, 1),
    Scenario("auth_voided", S.CANCELLED, AUTH_ONLY, 2),
    Scenario("paid_refunded", S.REFUNDED, ONLINE, 2),
    Scenario("paid_part_refunded", S.PARTIALLY_PAID, ONLINE, 2),
    Scenario("refunded_in_two", S.REFUNDED, ONLINE, 1),
    Scenario("duplicate_callback", S.PAID, ("testpay",), 1),
    # Played once each: orders that staff have to look at.
    Scenario("cancelled_money_kept", S.CANCELLED, ("testpay",), 0, attention=True),
    Scenario("refund_beyond_balance", S.PARTIALLY_PAID, ("testpay", "stripe"), 0, attention=True),
    Scenario("offline_marked_paid", S.PAID, ("check",), 0, attention=True),
    Scenario("capture_after_void", S.CANCELLED, ("testpay-auth",), 0, attention=True),
)

_FIRST_NAMES = ("ada", "bruno", "chloe", "dmitri", "elena", "farid", "grace", "hugo", "ines")
_LAST_NAMES = ("lopez", "martin", "nakamura", "okafor", "petrov", "quinn", "rossi", "silva")
_CURRENCIES = ("USD", "USD", "USD", "EUR", "GBP")
_SHARES = (Decimal("0.25"), Decimal("0.4"), Decimal("0.5"), Decimal("0.6"))
_TOKEN_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class OrderPlan:
    """Everything random about one demo order, drawn before anything is written."""

    number: str
    scenario: Scenario
    method: str
    total: Decimal
    currency: str
    customer_email: str
    part: Decimal
    """A share of the total (0 < part < total) for partial captures and refunds."""
    token: str
    """Random part of the gateway references."""
    age: timedelta
    """How long ago the order was placed (demo orders spread over 30 days)."""

    @property
    def attention(self) -> bool:
        return self.scenario.attention


def build_plan(count: int = DEFAULT_ORDERS, seed: int = DEFAULT_SEED) -> list[OrderPlan]:
    """
    Return the plan of the first ``count`` demo orders.

    The first round plays every scenario once (so ``len(SCENARIOS)`` orders
    or more cover every status and every deliberate attention case); the
    rest repeat the ordinary scenarios by weight. The plan depends only on the seed, never
    on the database, and a shorter plan is a prefix of a longer one.
    """
    # Demo data must be reproducible, not unpredictable.
    rng = random.Random(seed)  # noqa: S311
    first_round = list(SCENARIOS)
    rng.shuffle(first_round)
    recurring = [scenario for scenario in SCENARIOS if scenario.weight]
    weights = [scenario.weight for scenario in recurring]
    plans = []
    for index in range(count):
        if index < len(first_round):
            scenario = first_round[index]
        else:
            scenario = rng.choices(recurring, weights)[0]
        total = Decimal(rng.randrange(1200, 48000)) / 100
        plans.append(
            OrderPlan(
                number=f"D{FIRST_NUMBER + index}",
                scenario=scenario,
                method=rng.choice(scenario.methods),
                total=total,
                currency=rng.choice(_CURRENCIES),
                customer_email=(
                    f"{rng.choice(_FIRST_NAMES)}.{rng.choice(_LAST_NAMES)}"
                    f"{rng.randrange(10, 100)}@example.com"
                ),
                part=(total * rng.choice(_SHARES)).quantize(CENT),
                token="".join(rng.choices(_TOKEN_ALPHABET, k=16)),
                age=timedelta(minutes=rng.randrange(10, 30 * 24 * 60)),
            )
        )
    return plans
