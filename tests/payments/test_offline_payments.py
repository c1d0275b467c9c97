"""Section 5b: staff record money received or returned by cheque or wire."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied

from orderflow.audit import Channel, audit_context
from orders.models import Order
from orders.models import PaymentStatus as S
from orders.services import override_status, place_order
from payments.exceptions import PaymentError
from payments.models import GatewayEvent, PaymentTransaction, TransactionKind
from payments.services import record_offline_payment, record_offline_refund
from tests.factories import PaymentMethodFactory, next_number
from tests.payments.test_concurrency import run_together

pytestmark = pytest.mark.django_db


@pytest.fixture
def bookkeeper(django_user_model):
    """A staff user allowed to record offline payments and refunds, nothing else."""
    user = django_user_model.objects.create_user(username="bookkeeper", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(
            codename="record_offline_payment", content_type__app_label="payments"
        )
    )
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def offline_order(offline_method):
    def build(total: str = "100.00", method=None) -> Order:
        return place_order(
            number=next_number(),
            total=total,
            currency="USD",
            payment_method=method or offline_method,
        )

    return build


def ledger(order, kind=TransactionKind.CAPTURE) -> list[Decimal]:
    rows = PaymentTransaction.objects.filter(order=order, kind=kind).order_by("id")
    return list(rows.values_list("amount", flat=True))


def statuses(order) -> list[str]:
    return list(order.history.order_by("history_id").values_list("status", flat=True))


def reload(order) -> Order:
    return Order.objects.get(pk=order.pk)


# -- payments ----------------------------------------------------------------------


def test_a_cheque_for_the_total_marks_the_order_paid(offline_order, bookkeeper):
    order = offline_order()

    result = record_offline_payment(order, amount="100.00", reference="123", user=bookkeeper)

    assert result.outcome == "applied"
    assert result.order.status == S.PAID
    row = result.transaction
    assert (row.kind, row.amount, row.currency, row.reference) == (
        TransactionKind.CAPTURE,
        Decimal("100.000"),
        "USD",
        "123",
    )
    assert (row.created_by, row.channel) == (bookkeeper, "admin")
    order = reload(order)
    assert order.captured_amount == Decimal("100.00")
    assert not order.needs_attention


def test_partial_payment_then_the_rest(offline_order, bookkeeper):
    order = offline_order()

    first = record_offline_payment(order, amount="40", reference="W-1", user=bookkeeper)
    second = record_offline_payment(order, amount="60.00", reference="W-2", user=bookkeeper)

    assert first.order.status == S.PARTIALLY_PAID
    assert second.order.status == S.PAID
    assert ledger(order) == [Decimal("40.000"), Decimal("60.000")]
    assert statuses(order) == [S.AWAITING_PAYMENT, S.PARTIALLY_PAID, S.PAID]
    assert not reload(order).needs_attention


def test_the_reference_is_stripped(offline_order, bookkeeper):
    result = record_offline_payment(
        offline_order(), amount="100", reference="  CHK 77\u00a0", user=bookkeeper
    )

    assert result.transaction.reference == "CHK 77"


def test_a_reference_of_255_characters_is_accepted(offline_order, bookkeeper):
    result = record_offline_payment(
        offline_order(), amount="1", reference="9" * 255, user=bookkeeper
    )

    assert result.outcome == "applied"


@pytest.mark.parametrize(
    "reference",
    ["", "   ", None, "9" * 256, "CHK\x001", "CHK\n1", "CHK\t1", "12\u200b3", "\u202e321"],
    ids=["empty", "blank", "none", "too-long", "nul", "newline", "tab", "zero-width", "bidi"],
)
def test_unusable_references_are_refused(offline_order, bookkeeper, reference):
    order = offline_order()

    with pytest.raises(PaymentError, match="reference"):
        record_offline_payment(order, amount="10", reference=reference, user=bookkeeper)

    assert ledger(order) == []
    assert reload(order).status == S.AWAITING_PAYMENT


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "", None, "1.001", "NaN", "1e12"])
def test_bad_amounts_are_refused(offline_order, bookkeeper, amount):
    order = offline_order()

    with pytest.raises(PaymentError, match=r"(?i)amount"):
        record_offline_payment(order, amount=amount, reference="123", user=bookkeeper)

    assert ledger(order) == []


def test_a_payment_above_what_is_outstanding_is_refused_naming_it(offline_order, bookkeeper):
    order = offline_order()
    record_offline_payment(order, amount="60", reference="W-1", user=bookkeeper)

    with pytest.raises(PaymentError, match=r"outstanding on order .* \(40\.00 USD\)"):
        record_offline_payment(order, amount="50", reference="W-2", user=bookkeeper)

    assert ledger(order) == [Decimal("60.000")]
    assert reload(order).status == S.PARTIALLY_PAID


def test_a_paid_order_has_nothing_outstanding(offline_order, bookkeeper):
    order = offline_order()
    record_offline_payment(order, amount="100", reference="W-1", user=bookkeeper)

    with pytest.raises(PaymentError, match=r"\(0\.00 USD\)"):
        record_offline_payment(order, amount="0.01", reference="W-2", user=bookkeeper)


def test_money_kept_counts_refunds_when_reckoning_what_is_outstanding(offline_order, bookkeeper):
    order = offline_order()
    record_offline_payment(order, amount="100", reference="W-1", user=bookkeeper)
    record_offline_refund(order, amount="30", reference="R-1", user=bookkeeper, reason="Returned")

    result = record_offline_payment(order, amount="30", reference="W-2", user=bookkeeper)

    assert result.order.status == S.PAID
    with pytest.raises(PaymentError, match="outstanding"):
        record_offline_payment(order, amount="0.01", reference="W-3", user=bookkeeper)


# -- duplicates ----------------------------------------------------------------------


def test_the_same_cheque_twice_is_recorded_once_and_said_so(offline_order, bookkeeper):
    order = offline_order()
    first = record_offline_payment(order, amount="100.00", reference="123", user=bookkeeper)

    again = record_offline_payment(order, amount="100", reference=" 123 ", user=bookkeeper)

    assert again.outcome == "duplicate"
    assert "already recorded" in again.reason
    assert again.transaction == first.transaction
    assert ledger(order) == [Decimal("100.000")]
    assert statuses(order) == [S.AWAITING_PAYMENT, S.PAID]


def test_the_same_reference_with_another_amount_is_refused(offline_order, bookkeeper):
    order = offline_order()
    record_offline_payment(order, amount="40", reference="123", user=bookkeeper)

    with pytest.raises(PaymentError, match=r"another amount \(40\.00 USD, not 50\.00 USD\)"):
        record_offline_payment(order, amount="50", reference="123", user=bookkeeper)

    assert ledger(order) == [Decimal("40.000")]


def test_the_same_reference_for_another_order_is_refused_naming_it(offline_order, bookkeeper):
    first, second = offline_order(), offline_order()
    record_offline_payment(first, amount="100", reference="123", user=bookkeeper)

    with pytest.raises(PaymentError, match=f"already recorded for order {first.number}"):
        record_offline_payment(second, amount="100", reference="123", user=bookkeeper)

    assert ledger(second) == []
    assert reload(second).status == S.AWAITING_PAYMENT


def test_references_are_unique_per_method_only(offline_order, bookkeeper):
    wire = PaymentMethodFactory(code="wire", offline=True)
    by_cheque, by_wire = offline_order(), offline_order(method=wire)

    record_offline_payment(by_cheque, amount="100", reference="123", user=bookkeeper)
    result = record_offline_payment(by_wire, amount="100", reference="123", user=bookkeeper)

    assert result.outcome == "applied"
    assert result.order.status == S.PAID


def test_the_same_refund_twice_is_recorded_once(offline_order, bookkeeper):
    order = offline_order()
    record_offline_payment(order, amount="100", reference="123", user=bookkeeper)
    record_offline_refund(order, amount="30", reference="R-1", user=bookkeeper, reason="Returned")

    again = record_offline_refund(
        order, amount="30", reference="R-1", user=bookkeeper, reason="Returned"
    )

    assert again.outcome == "duplicate"
    assert ledger(order, TransactionKind.REFUND) == [Decimal("30.000")]


# -- refunds -------------------------------------------------------------------------


def test_partial_refund_then_the_rest(offline_order, bookkeeper):
    order = offline_order()
    record_offline_payment(order, amount="100", reference="123", user=bookkeeper)

    part = record_offline_refund(
        order, amount="30", reference="R-1", user=bookkeeper, reason="One item returned"
    )
    rest = record_offline_refund(
        order, amount="70", reference="R-2", user=bookkeeper, reason="Order cancelled"
    )

    assert part.order.status == S.PARTIALLY_PAID
    assert rest.order.status == S.REFUNDED
    assert ledger(order, TransactionKind.REFUND) == [Decimal("30.000"), Decimal("70.000")]
    order = reload(order)
    assert (order.captured_amount, order.refunded_amount) == (Decimal("100"), Decimal("100"))
    assert not order.needs_attention
    assert statuses(order) == [S.AWAITING_PAYMENT, S.PAID, S.PARTIALLY_PAID, S.REFUNDED]


def test_a_full_refund_of_a_paid_order(offline_order, bookkeeper):
    order = offline_order()
    record_offline_payment(order, amount="100", reference="123", user=bookkeeper)

    result = record_offline_refund(
        order, amount="100", reference="R-1", user=bookkeeper, reason="Order cancelled"
    )

    assert result.order.status == S.REFUNDED
    assert result.transaction.kind == TransactionKind.REFUND
    assert not reload(order).needs_attention


def test_a_refund_beyond_the_refundable_balance_is_refused_naming_it(offline_order, bookkeeper):
    order = offline_order()
    record_offline_payment(order, amount="100", reference="123", user=bookkeeper)
    record_offline_refund(order, amount="30", reference="R-1", user=bookkeeper, reason="Returned")

    with pytest.raises(PaymentError, match=r"refundable balance .* \(70\.00 USD\)"):
        record_offline_refund(
            order, amount="70.01", reference="R-2", user=bookkeeper, reason="Returned"
        )

    assert ledger(order, TransactionKind.REFUND) == [Decimal("30.000")]
    assert reload(order).status == S.PARTIALLY_PAID


def test_nothing_can_be_refunded_before_money_was_received(offline_order, bookkeeper):
    order = offline_order()

    with pytest.raises(PaymentError, match=r"refundable balance .* \(0\.00 USD\)"):
        record_offline_refund(order, amount="1", reference="R-1", user=bookkeeper, reason="Oops")

    assert ledger(order, TransactionKind.REFUND) == []


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_refund_needs_a_reason(offline_order, bookkeeper, reason):
    order = offline_order()
    record_offline_payment(order, amount="100", reference="123", user=bookkeeper)

    with pytest.raises(PaymentError, match="reason is required"):
        record_offline_refund(order, amount="10", reference="R-1", user=bookkeeper, reason=reason)

    assert ledger(order, TransactionKind.REFUND) == []


@pytest.mark.parametrize("amount", ["0", "abc", "1.001"])
def test_a_refund_with_a_bad_amount_is_refused(offline_order, bookkeeper, amount):
    order = offline_order()
    record_offline_payment(order, amount="100", reference="123", user=bookkeeper)

    with pytest.raises(PaymentError):
        record_offline_refund(order, amount=amount, reference="R-1", user=bookkeeper, reason="x")

    assert ledger(order, TransactionKind.REFUND) == []


# -- the status table decides ----------------------------------------------------------


def test_money_for_a_cancelled_order_is_kept_and_flags_it(offline_order, bookkeeper):
    status = S.CANCELLED
    order = override_status(offline_order(), status, user=None, reason="Customer gave up")

    result = record_offline_payment(order, amount="100", reference="123", user=bookkeeper)

    assert result.outcome == "ignored"
    assert "not allowed" in result.reason
    order = reload(order)
    assert order.status == status
    assert ledger(order) == [Decimal("100.000")]
    assert order.needs_attention
    event = GatewayEvent.objects.get(order=order)
    assert (event.outcome, event.reference, event.amount) == ("ignored", "123", Decimal("100"))


def test_money_for_a_declined_order_pays_it(offline_order, bookkeeper):
    # A decline is not final (5a): money that arrives afterwards is a payment.
    order = override_status(offline_order(), S.DECLINED, user=None, reason="Card refused")

    result = record_offline_payment(order, amount="100", reference="123", user=bookkeeper)

    assert result.outcome == "applied"
    order = reload(order)
    assert (order.status, order.needs_attention) == (S.PAID, False)
    assert ledger(order) == [Decimal("100.000")]


# -- who may, and what the history says --------------------------------------------------


def test_recording_needs_the_permission(offline_order, staff_user):
    order = offline_order()

    with pytest.raises(PermissionDenied):
        record_offline_payment(order, amount="100", reference="123", user=staff_user)
    with pytest.raises(PermissionDenied):
        record_offline_refund(order, amount="1", reference="R-1", user=staff_user, reason="x")

    assert not PaymentTransaction.objects.filter(order=order).exists()
    assert reload(order).status == S.AWAITING_PAYMENT


def test_the_permission_is_named_for_staff():
    permission = Permission.objects.get(codename="record_offline_payment")

    assert permission.name == "Can record offline payments and refunds"
    assert permission.content_type.model == "paymenttransaction"


def test_history_records_the_user_the_admin_channel_and_the_reason(offline_order, bookkeeper):
    order = offline_order()

    record_offline_payment(
        order, amount="100", reference="123", user=bookkeeper, reason="Cheque banked today"
    )
    record_offline_refund(
        order, amount="100", reference="R-1", user=bookkeeper, reason="Goods never shipped"
    )

    paid, refunded = order.history.filter(status__in=[S.PAID, S.REFUNDED]).order_by("history_id")
    for record, reason in [(paid, "Cheque banked today"), (refunded, "Goods never shipped")]:
        assert (record.history_user, record.channel) == (bookkeeper, Channel.ADMIN)
        assert reason in record.history_change_reason
    assert order.history.count() == 3


def test_a_payment_without_a_reason_says_what_was_received(offline_order, bookkeeper):
    order = offline_order()

    record_offline_payment(order, amount="50", reference="123", user=bookkeeper)

    record = order.history.get(status=S.PARTIALLY_PAID)
    assert "Check / money order 123 received: 50.00 USD" in record.history_change_reason


def test_no_user_is_a_trusted_system_channel(offline_order):
    order = offline_order()

    with audit_context(channel=Channel.COMMAND):
        result = record_offline_payment(order, amount="100", reference="123", user=None)

    assert result.order.status == S.PAID
    record = order.history.get(status=S.PAID)
    assert (record.history_user, record.channel) == (None, Channel.COMMAND)
    assert result.transaction.created_by is None


# -- online orders ---------------------------------------------------------------------


def test_an_online_order_is_refused_pointing_to_the_gateway(make_order, bookkeeper):
    awaiting, paid = make_order(S.AWAITING_PAYMENT), make_order(S.PAID)

    with pytest.raises(PaymentError, match="online gateway: capture or refund"):
        record_offline_payment(awaiting, amount="100", reference="123", user=bookkeeper)
    with pytest.raises(PaymentError, match="online gateway: capture or refund"):
        record_offline_refund(paid, amount="10", reference="R-1", user=bookkeeper, reason="x")

    assert reload(awaiting).status == S.AWAITING_PAYMENT
    assert ledger(awaiting) == []
    assert ledger(paid, TransactionKind.REFUND) == []


# -- at the same moment (section 11) ----------------------------------------------------


def split(results):
    errors = [r for r in results if isinstance(r, Exception)]
    return [r for r in results if not isinstance(r, Exception)], errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(3))
def test_the_same_cheque_entered_twice_at_once_is_one_row(offline_order, bookkeeper, round_):
    order = offline_order()

    def enter():
        return record_offline_payment(order, amount="100.00", reference="123", user=bookkeeper)

    done, errors = split(run_together(enter, enter))

    assert errors == []
    assert sorted(r.outcome for r in done) == ["applied", "duplicate"]
    assert ledger(order) == [Decimal("100.000")]
    order = reload(order)
    assert (order.status, order.captured_amount) == (S.PAID, Decimal("100.00"))
    assert statuses(order) == [S.AWAITING_PAYMENT, S.PAID]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_cheque_entered_for_two_orders_at_once_goes_to_one(offline_order, bookkeeper):
    first, second = offline_order(), offline_order()

    done, errors = split(
        run_together(
            *[
                lambda order=order: record_offline_payment(
                    order, amount="100.00", reference="123", user=bookkeeper
                )
                for order in (first, second)
            ]
        )
    )

    assert [r.outcome for r in done] == ["applied"]
    assert len(errors) == 1 and isinstance(errors[0], PaymentError)
    assert "already recorded for order" in str(errors[0])
    assert PaymentTransaction.objects.filter(reference="123").count() == 1
    assert sorted(reload(o).status for o in (first, second)) == [S.AWAITING_PAYMENT, S.PAID]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_cheques_at_once_never_pay_more_than_the_total(offline_order, bookkeeper):
    order = offline_order()

    done, errors = split(
        run_together(
            *[
                lambda ref=ref: record_offline_payment(
                    order, amount="60.00", reference=ref, user=bookkeeper
                )
                for ref in ("W-1", "W-2")
            ]
        )
    )

    assert [r.outcome for r in done] == ["applied"]
    assert len(errors) == 1 and isinstance(errors[0], PaymentError)
    assert "outstanding" in str(errors[0]) and "(40.00 USD)" in str(errors[0])
    order = reload(order)
    assert (order.status, order.captured_amount) == (S.PARTIALLY_PAID, Decimal("60.00"))
