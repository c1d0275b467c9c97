"""
Fill a local database with demo data: payment methods, orders, a superuser.

Every order is built through the real services (``place_order``,
``apply_gateway_event``, ``override_status``), each step inside the audit
context of the channel that would make it in real life, so the ledger, the
gateway events and the history read like the real thing. The data is
deterministic (a fixed seed) and the command is idempotent: orders already
present are skipped, payment methods are only changed where they differ.
"""

from __future__ import annotations

import random
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count
from django.utils import timezone

from orderflow.audit import Channel, audit_context
from orders.models import Order, PaymentStatus
from orders.services import override_status, place_order
from payments.gateways import CheckoutOutcome, FactKind, MoneyFact, PaymentResult
from payments.gateways.hmac import SIGNATURE_HEADER, build_body, sign
from payments.inbox import receive_callback
from payments.models import CaptureMode, PaymentMethod, PaymentMethodKind
from payments.services import apply_gateway_event

S = PaymentStatus

DEFAULT_ORDERS = 60
DEFAULT_SEED = 1001
FIRST_NUMBER = 1001
DEMO_USERNAME = "demo"
ADMIN_URL = "http://127.0.0.1:8000/admin/"
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


def gateway_reference(plan: OrderPlan, step: int = 0) -> str:
    """
    Return the gateway's id for one money movement of a demo order.

    Step 0 is the checkout's payment: its authorization, capture, void or
    decline share one id, as a Stripe PaymentIntent does. Later steps
    (refunds) each have their own id.
    """
    if plan.method == "stripe":
        return f"pi_{plan.token}" if step == 0 else f"re_{plan.token}{step}"
    return f"tx_{plan.token}" if step == 0 else f"tx_{plan.token}_{step}"


class DemoOrders:
    """Play the scenarios through the services, each step in its own channel."""

    def __init__(self, *, methods: dict[str, PaymentMethod], staff_user: Any) -> None:
        self.methods = methods
        self.staff_user = staff_user

    def play(self, plan: OrderPlan) -> Order:
        return getattr(self, plan.scenario.key)(plan)

    # -- channels --------------------------------------------------------------

    def place(self, plan: OrderPlan, initial: PaymentResult | None = None) -> Order:
        with audit_context(channel=Channel.STOREFRONT, user=None):
            return place_order(
                number=plan.number,
                total=plan.total,
                currency=plan.currency,
                payment_method=self.methods[plan.method],
                customer_email=plan.customer_email,
                initial=initial,
                placed_at=timezone.now() - plan.age,
            )

    def checkout(self, plan: OrderPlan, outcome: str, amount: Decimal | None = None) -> Order:
        result = PaymentResult(outcome, amount=amount, reference=gateway_reference(plan))
        return self.place(plan, result)

    def callback(
        self, order: Order, plan: OrderPlan, kind: str, amount: Decimal | None = None, step: int = 0
    ) -> Order:
        method = self.methods[plan.method]
        reference = gateway_reference(plan, step)
        with audit_context(channel=Channel.GATEWAY, user=None, reason=""):
            if method.gateway != "hmac":
                event = MoneyFact(kind, reference, amount)
                return apply_gateway_event(order, event).order
            # The built-in gateway's callbacks go through the real inbox, signed
            # as the gateway would sign them, so the demo shows stored events.
            body = build_body(
                event_id=f"evt_{plan.token}_{step}_{kind}",
                event_type=f"payment.{kind}",
                order=order.number,
                currency=order.currency,
                amount=str(amount) if amount is not None else None,
                transaction=reference,
            )
            answer = receive_callback(
                method_code=method.code,
                body=body,
                headers={SIGNATURE_HEADER: sign(body, method.webhook_secret)},
            )
            if answer.http_status != 200:
                raise CommandError(f"Demo callback for {order.number} failed: {answer.body}")
            return Order.objects.get(pk=order.pk)

    def staff_records_payment(
        self, order: Order, plan: OrderPlan, amount: Decimal, reason: str
    ) -> Order:
        # The cheque or transfer number is the reference: recording it twice
        # counts it once.
        prefix = "CHK" if plan.method == "check" else "WIRE"
        event = MoneyFact(FactKind.CAPTURED, f"{prefix}-{plan.number}", amount)
        with audit_context(channel=Channel.ADMIN, user=self.staff_user, reason=reason):
            return apply_gateway_event(order, event, user=self.staff_user).order

    def staff_override(
        self, order: Order, status: str, reason: str, *, allow_discouraged: bool = False
    ) -> Order:
        with audit_context(channel=Channel.ADMIN, user=self.staff_user):
            return override_status(
                order,
                status,
                user=self.staff_user,
                reason=reason,
                allow_discouraged=allow_discouraged,
            )

    def job_override(self, order: Order, status: str, reason: str) -> Order:
        with audit_context(channel=Channel.COMMAND, user=None):
            return override_status(order, status, user=None, reason=reason)

    def paid_in_full(self, plan: OrderPlan) -> Order:
        """Check out and capture the total the way the method works."""
        if self.methods[plan.method].capture_mode == CaptureMode.SALE:
            return self.checkout(plan, CheckoutOutcome.CAPTURED, plan.total)
        order = self.checkout(plan, CheckoutOutcome.AUTHORIZED)
        return self.callback(order, plan, FactKind.CAPTURED, plan.total)

    # -- scenarios (one per Scenario.key) ----------------------------------------

    def offline_awaiting(self, plan: OrderPlan) -> Order:
        return self.place(plan)

    def offline_paid(self, plan: OrderPlan) -> Order:
        reason = (
            "Cheque received and banked."
            if plan.method == "check"
            else "Wire transfer arrived in full."
        )
        return self.staff_records_payment(self.place(plan), plan, plan.total, reason)

    def offline_part_paid(self, plan: OrderPlan) -> Order:
        reason = "Wire transfer covers part of the total; the customer will send the rest."
        return self.staff_records_payment(self.place(plan), plan, plan.part, reason)

    def offline_cancelled(self, plan: OrderPlan) -> Order:
        reason = "Customer cancelled by phone before paying."
        return self.staff_override(self.place(plan), S.CANCELLED, reason)

    def checkout_pending(self, plan: OrderPlan) -> Order:
        return self.checkout(plan, CheckoutOutcome.PENDING)

    def abandoned_cancelled(self, plan: OrderPlan) -> Order:
        order = self.checkout(plan, CheckoutOutcome.PENDING)
        reason = "Checkout abandoned: no answer from the gateway for 7 days (nightly clean-up)."
        return self.job_override(order, S.CANCELLED, reason)

    def sale_paid(self, plan: OrderPlan) -> Order:
        return self.checkout(plan, CheckoutOutcome.CAPTURED, plan.total)

    def sale_part_paid(self, plan: OrderPlan) -> Order:
        return self.checkout(plan, CheckoutOutcome.CAPTURED, plan.part)

    def sale_declined(self, plan: OrderPlan) -> Order:
        return self.checkout(plan, CheckoutOutcome.DECLINED)

    def pending_declined(self, plan: OrderPlan) -> Order:
        order = self.checkout(plan, CheckoutOutcome.PENDING)
        return self.callback(order, plan, FactKind.DECLINED)

    def auth_held(self, plan: OrderPlan) -> Order:
        return self.checkout(plan, CheckoutOutcome.AUTHORIZED)

    def pending_authorized(self, plan: OrderPlan) -> Order:
        order = self.checkout(plan, CheckoutOutcome.PENDING)
        return self.callback(order, plan, FactKind.AUTHORIZED)

    def auth_captured(self, plan: OrderPlan) -> Order:
        return self.paid_in_full(plan)

    def auth_part_captured(self, plan: OrderPlan) -> Order:
        order = self.checkout(plan, CheckoutOutcome.AUTHORIZED)
        return self.callback(order, plan, FactKind.CAPTURED, plan.part)

    def auth_voided(self, plan: OrderPlan) -> Order:
        order = self.checkout(plan, CheckoutOutcome.AUTHORIZED)
        return self.callback(order, plan, FactKind.VOIDED)

    def paid_refunded(self, plan: OrderPlan) -> Order:
        order = self.paid_in_full(plan)
        return self.callback(order, plan, FactKind.REFUNDED, plan.total, step=1)

    def paid_part_refunded(self, plan: OrderPlan) -> Order:
        order = self.paid_in_full(plan)
        return self.callback(order, plan, FactKind.REFUNDED, plan.part, step=1)

    def refunded_in_two(self, plan: OrderPlan) -> Order:
        order = self.paid_in_full(plan)
        order = self.callback(order, plan, FactKind.REFUNDED, plan.part, step=1)
        return self.callback(order, plan, FactKind.REFUNDED, plan.total - plan.part, step=2)

    def duplicate_callback(self, plan: OrderPlan) -> Order:
        # The gateway confirms by callback the capture already answered at
        # checkout: same reference, so no second effect.
        order = self.checkout(plan, CheckoutOutcome.CAPTURED, plan.total)
        return self.callback(order, plan, FactKind.CAPTURED, plan.total)

    def cancelled_money_kept(self, plan: OrderPlan) -> Order:
        order = self.paid_in_full(plan)
        reason = "Customer cancelled by phone; refund to be issued from the gateway dashboard."
        return self.staff_override(order, S.CANCELLED, reason, allow_discouraged=True)

    def refund_beyond_balance(self, plan: OrderPlan) -> Order:
        order = self.paid_in_full(plan)
        order = self.callback(order, plan, FactKind.REFUNDED, plan.part, step=1)
        # A full refund reported after the partial one: more than is left.
        return self.callback(order, plan, FactKind.REFUNDED, plan.total, step=2)

    def offline_marked_paid(self, plan: OrderPlan) -> Order:
        reason = "Customer says the cheque is in the post; shipment released early."
        return self.staff_override(self.place(plan), S.PAID, reason)

    def capture_after_void(self, plan: OrderPlan) -> Order:
        order = self.checkout(plan, CheckoutOutcome.AUTHORIZED)
        order = self.callback(order, plan, FactKind.VOIDED)
        # The gateway reports a capture that raced the void: the money is
        # recorded, the status stays, the event is ignored.
        return self.callback(order, plan, FactKind.CAPTURED, plan.total)


class Command(BaseCommand):
    help = (
        "Create demo payment methods, orders in every payment status (built through "
        "the real services) and a 'demo' superuser with a new random password. "
        "Local demos only; running it again adds nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--orders",
            type=int,
            default=DEFAULT_ORDERS,
            help="How many demo orders to have (default %(default)s).",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=DEFAULT_SEED,
            help="Random seed of the demo data (default %(default)s).",
        )

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo creates a superuser and prints its password: it is for local "
                "demos only and refuses to run with DJANGO_DEBUG=0."
            )
        count = options["orders"]
        if count < 0:
            raise CommandError("--orders must be 0 or more.")
        plans = build_plan(count, options["seed"])

        with audit_context(channel=Channel.COMMAND, user=None, reason="Demo data (seed_demo)."):
            methods = self.set_up_payment_methods()
            user, password, user_created = self.set_up_demo_user()
            self.create_orders(plans, DemoOrders(methods=methods, staff_user=user))

        self.report_credentials(user, password, user_created)

    def set_up_payment_methods(self) -> dict[str, PaymentMethod]:
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
        self.stdout.write(
            f"Payment methods: {created} created, {len(methods) - created} already present."
        )
        return methods

    def set_up_demo_user(self) -> tuple[Any, str, bool]:
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

    def create_orders(self, plans: list[OrderPlan], demo: DemoOrders) -> None:
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
                raise CommandError(
                    f"Demo order {plan.number} ({plan.scenario.key}) ended {order.status}, "
                    f"not {plan.scenario.status}."
                )
            created.append(plan)

        span = f" ({numbers[0]} to {numbers[-1]})" if numbers else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Orders: {len(created)} created, {len(present)} already present{span}."
            )
        )
        counts = dict(
            Order.objects.filter(number__in=numbers)
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by()
        )
        for status in PaymentStatus:
            self.stdout.write(f"  {status.label:<18} {counts.get(status.value, 0):>4}")
        attention = sorted(
            Order.objects.filter(number__in=numbers)
            .needing_attention()
            .values_list("number", flat=True)
        )
        self.check_attention(created, set(attention))
        if attention:
            self.stdout.write(
                self.style.WARNING(
                    "Orders that need attention, on purpose (admin filter 'needs attention'): "
                    + ", ".join(attention)
                )
            )

    def check_attention(self, created: list[OrderPlan], attention: set[str]) -> None:
        """Refuse demo data that does not tell the story it was meant to."""
        wrong = sorted(
            plan.number for plan in created if plan.attention != (plan.number in attention)
        )
        if wrong:
            raise CommandError(
                "These demo orders do not need attention as planned (check the attention "
                "rules in orders.models): " + ", ".join(wrong)
            )

    def report_credentials(self, user: Any, password: str, created: bool) -> None:
        action = "Created" if created else "Reset the password of"
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(f"{action} the demo superuser."))
        self.stdout.write(f"  Admin:     {ADMIN_URL}")
        self.stdout.write(f"  Username:  {user.get_username()}")
        self.stdout.write(f"  Password:  {password}")
        self.stdout.write(
            self.style.WARNING(
                "These credentials are for this local demo only. The password changes "
                "every time seed_demo runs."
            )
        )
