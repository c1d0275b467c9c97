"""Test data: payment methods by factory, orders through the real services."""

from __future__ import annotations

import itertools
from decimal import Decimal

import factory
import pytest

from orders.models import Order, PaymentStatus
from orders.services import place_order
from payments.gateways import MoneyFact
from payments.models import CaptureMode, PaymentMethod, PaymentMethodKind
from payments.services import apply_gateway_event

_numbers = itertools.count(1)
_refs = itertools.count(1)


def next_number() -> str:
    return f"T{next(_numbers):06d}"


def next_ref(prefix: str = "tx") -> str:
    return f"{prefix}_{next(_refs)}"


class PaymentMethodFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PaymentMethod
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"method-{n}")
    name = factory.LazyAttribute(lambda o: o.code.replace("-", " ").title())
    kind = PaymentMethodKind.ONLINE
    gateway = "hmac"
    capture_mode = CaptureMode.SALE
    supports_refunds = True
    supports_partial_refunds = True
    is_active = True
    webhook_secret = "whsec_test_only_secret"

    class Params:
        offline = factory.Trait(
            kind=PaymentMethodKind.OFFLINE,
            gateway="",
            webhook_secret="",
            supports_refunds=False,
            supports_partial_refunds=False,
        )


@pytest.fixture
def offline_method(db) -> PaymentMethod:
    return PaymentMethodFactory(code="check", name="Check / money order", offline=True)


@pytest.fixture
def online_method(db) -> PaymentMethod:
    return PaymentMethodFactory(code="testpay", name="Test gateway")


def event(kind: str, amount: str | Decimal | None = None, reference: str | None = None):
    return MoneyFact(kind=kind, reference=reference or next_ref(kind), amount=amount)


def bring_to(order: Order, status: str, *, partial: Decimal | None = None) -> Order:
    """Move an awaiting online order to ``status`` the way a gateway would."""
    half = partial if partial is not None else (order.total / 2).quantize(Decimal("0.01"))
    steps: dict[str, list[MoneyFact]] = {
        PaymentStatus.AWAITING_PAYMENT: [],
        PaymentStatus.AUTHORIZED: [event("authorized")],
        PaymentStatus.PARTIALLY_PAID: [event("captured", half)],
        PaymentStatus.PAID: [event("captured", order.total)],
        PaymentStatus.DECLINED: [event("declined")],
        PaymentStatus.CANCELLED: [event("authorized"), event("voided")],
        PaymentStatus.REFUNDED: [event("captured", order.total), event("refunded", order.total)],
    }
    for step in steps[status]:
        order = apply_gateway_event(order, step).order
    assert order.status == status
    return order


@pytest.fixture
def make_order(db, online_method):
    """Build an order in any status with a ledger that explains it."""

    def build(
        status: str = PaymentStatus.AWAITING_PAYMENT,
        *,
        total: str = "100.00",
        method: PaymentMethod | None = None,
        **kwargs,
    ) -> Order:
        order = place_order(
            number=next_number(),
            total=Decimal(total),
            currency="USD",
            payment_method=method or online_method,
            **kwargs,
        )
        return bring_to(order, status)

    return build
