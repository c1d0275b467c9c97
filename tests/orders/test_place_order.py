"""Section 4: the status an order starts in, and bad input refused by name."""

from decimal import Decimal

import pytest

from orders.exceptions import InvalidOrder
from orders.models import Order
from orders.models import PaymentStatus as S
from orders.services import place_order
from payments.gateways import PaymentResult
from payments.models import CaptureMode, PaymentTransaction, TransactionKind
from tests.factories import PaymentMethodFactory, next_number


def place(method, initial=None, total="100.00", **kwargs):
    return place_order(
        number=kwargs.pop("number", next_number()),
        total=total,
        currency=kwargs.pop("currency", "USD"),
        payment_method=method,
        initial=initial,
        **kwargs,
    )


@pytest.fixture
def auth_method(db):
    return PaymentMethodFactory(code="testpay-auth", capture_mode=CaptureMode.AUTH)


@pytest.mark.django_db
def test_offline_order_starts_awaiting_payment(offline_method):
    order = place(offline_method)

    assert order.status == S.AWAITING_PAYMENT
    assert not PaymentTransaction.objects.filter(order=order).exists()
    assert not order.needs_attention


@pytest.mark.django_db
def test_offline_order_refuses_a_gateway_result(offline_method):
    with pytest.raises(InvalidOrder, match="offline"):
        place(offline_method, PaymentResult("captured", reference="x"))
    assert not Order.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [CaptureMode.SALE, CaptureMode.AUTH])
@pytest.mark.parametrize(
    ("initial", "status", "ledger"),
    [
        (None, S.AWAITING_PAYMENT, None),
        (PaymentResult("pending", reference="pi_1"), S.AWAITING_PAYMENT, None),
        (
            PaymentResult("authorized", reference="pi_1"),
            S.AUTHORIZED,
            TransactionKind.AUTHORIZATION,
        ),
        (PaymentResult("declined", reference="pi_1"), S.DECLINED, None),
    ],
)
def test_online_order_starts_from_checkout_result(mode, initial, status, ledger):
    method = PaymentMethodFactory(code=f"gw-{mode}", capture_mode=mode)

    order = place(method, initial)

    assert order.status == status
    kinds = list(PaymentTransaction.objects.filter(order=order).values_list("kind", flat=True))
    assert kinds == ([ledger] if ledger else [])
    assert not order.needs_attention


@pytest.mark.django_db
def test_sale_capture_of_the_total_starts_paid(online_method):
    order = place(online_method, PaymentResult("captured", reference="ch_1"))

    assert order.status == S.PAID
    assert order.captured_amount == Decimal("100.00")
    assert order.gateway_reference == "ch_1"


@pytest.mark.django_db
def test_sale_capture_below_total_starts_partially_paid(online_method):
    order = place(online_method, PaymentResult("captured", amount="40.00", reference="ch_1"))

    assert order.status == S.PARTIALLY_PAID
    assert order.net_paid_amount == Decimal("40.00")
    assert not order.needs_attention


@pytest.mark.django_db
def test_auth_mode_never_starts_paid(auth_method):
    with pytest.raises(InvalidOrder, match="authorize"):
        place(auth_method, PaymentResult("captured", reference="ch_1"))
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_authorized_amount_defaults_to_total(online_method):
    order = place(online_method, PaymentResult("authorized", reference="pi_9"))

    row = PaymentTransaction.objects.get(order=order)
    assert row.amount == Decimal("100.00")
    assert row.reference == "pi_9"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"number": "  "}, "number is required"),
        ({"total": "0"}, "greater than zero"),
        ({"total": "-5"}, "greater than zero"),
        ({"total": "1.001"}, "more decimals than USD allows"),
        ({"total": "1.5", "currency": "JPY"}, "more decimals than JPY allows"),
        ({"total": "abc"}, "not a number"),
        ({"currency": "US"}, "3-letter"),
        ({"currency": "U$D"}, "3-letter"),
        ({"customer_email": "not-an-email"}, "valid email"),
    ],
)
def test_bad_order_data_is_refused_by_name(online_method, kwargs, message):
    with pytest.raises(InvalidOrder, match=message):
        place(online_method, **kwargs)
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_currency_is_normalised_to_upper_case(online_method):
    assert place(online_method, currency="eur").currency == "EUR"


@pytest.mark.django_db
def test_duplicate_order_number_is_refused_and_first_order_kept(online_method):
    first = place(online_method, number="A1001")

    with pytest.raises(InvalidOrder, match="A1001 already exists"):
        place(online_method, number="A1001", total="5.00")

    first.refresh_from_db()
    assert first.total == Decimal("100.00")


@pytest.mark.django_db
def test_inactive_method_is_refused(db):
    method = PaymentMethodFactory(code="old", is_active=False)

    with pytest.raises(InvalidOrder, match="not active"):
        place(method)


@pytest.mark.django_db
def test_unknown_method_code_is_refused(db):
    with pytest.raises(InvalidOrder, match="no payment method 'nope'"):
        place("nope")


@pytest.mark.django_db
def test_method_can_be_given_by_code(online_method):
    assert place("testpay").payment_method == online_method


@pytest.mark.django_db
def test_captured_result_needs_a_reference(online_method):
    with pytest.raises(InvalidOrder, match="reference"):
        place(online_method, PaymentResult("captured"))


@pytest.mark.django_db
def test_checkout_amount_above_total_is_refused(online_method):
    with pytest.raises(InvalidOrder, match="more than the order total"):
        place(online_method, PaymentResult("captured", amount="100.01", reference="c"))


@pytest.mark.django_db
def test_checkout_reference_of_another_order_is_refused(online_method):
    place(online_method, PaymentResult("captured", reference="ch_same"))

    with pytest.raises(InvalidOrder, match="already recorded"):
        place(online_method, PaymentResult("captured", reference="ch_same"))
    assert Order.objects.count() == 1


def test_unknown_checkout_outcome_is_refused():
    with pytest.raises(ValueError, match="Unknown checkout outcome 'maybe'"):
        PaymentResult("maybe")
