"""Editing an order's details writes those fields alone; the money moves only with the ledger."""

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.db import transaction

from orders.exceptions import InvalidOrder
from orders.models import Order, UnsafeOrderSave
from orders.models import PaymentStatus as S
from orders.services import update_order_details
from payments.ledger import record_transaction
from payments.models import TransactionKind

pytestmark = pytest.mark.django_db


def test_a_whole_row_save_of_an_existing_order_is_refused(make_order):
    order = make_order(S.PAID)
    order.customer_email = "x@example.com"

    with pytest.raises(UnsafeOrderSave, match="update_fields"):
        order.save()

    assert Order.objects.get(pk=order.pk).customer_email == ""


@pytest.mark.parametrize("field", ["captured_amount", "refunded_amount"])
def test_running_totals_are_never_saved_from_an_instance(make_order, field):
    order = make_order(S.PAID)
    setattr(order, field, Decimal("1.00"))

    with pytest.raises(UnsafeOrderSave, match="ledger row"):
        order.save(update_fields=[field, "updated_at"])

    order = Order.objects.get(pk=order.pk)
    assert (order.captured_amount, order.refunded_amount) == (Decimal("100.00"), Decimal("0.00"))


def _refund_held(order) -> Order:
    # What the callback path does: the ledger row's total is held, to be
    # written with the status in one UPDATE.
    locked = Order.objects.lock(order)
    record_transaction(
        order=locked,
        kind=TransactionKind.REFUND,
        amount=Decimal("10.00"),
        reference="re_held",
        save_totals=False,
    )
    assert locked.refunded_amount == Decimal("10.00")
    return locked


def test_a_total_held_by_its_ledger_row_is_written_with_the_next_save(make_order):
    order = make_order(S.PAID)
    with transaction.atomic():
        locked = _refund_held(order)
        assert Order.objects.get(pk=order.pk).refunded_amount == Decimal("0.00")
        locked.save_fields("updated_at", savepoint=False)
        assert Order.objects.get(pk=order.pk).refunded_amount == Decimal("10.00")
        locked.save_held_totals()  # nothing left to write

    assert Order.objects.get(pk=order.pk).refunded_amount == Decimal("10.00")


@pytest.mark.parametrize("save", ["save_fields", "save_held_totals"])
def test_a_held_total_changed_after_its_ledger_row_is_refused(make_order, save):
    order = make_order(S.PAID)
    with transaction.atomic():
        locked = _refund_held(order)
        locked.refunded_amount = Decimal("90.00")
        with pytest.raises(UnsafeOrderSave, match="refunded_amount"):
            if save == "save_fields":
                locked.save_fields("refunded_amount", "updated_at")
            else:
                locked.save_held_totals()

    assert Order.objects.get(pk=order.pk).refunded_amount == Decimal("0.00")


def test_named_fields_of_an_existing_order_can_be_saved(make_order):
    order = make_order(S.PAID)
    order.customer_email = "x@example.com"

    order.save(update_fields=["customer_email"])

    assert Order.objects.get(pk=order.pk).customer_email == "x@example.com"


def test_update_order_details_writes_the_change_with_its_history(make_order, admin_user):
    order = make_order(S.PAID)

    saved = update_order_details(order, user=admin_user, customer_email=" new@example.com ")

    assert Order.objects.get(pk=order.pk).customer_email == "new@example.com"
    latest = saved.history.first()
    assert (latest.customer_email, latest.history_user, latest.channel) == (
        "new@example.com",
        admin_user,
        "admin",
    )
    assert latest.history_change_reason == "Order details changed: customer email."
    assert latest.status == S.PAID


def test_update_order_details_without_a_change_saves_nothing(make_order, admin_user):
    order = make_order(S.PAID, customer_email="same@example.com")
    before = (order.history.count(), Order.objects.get(pk=order.pk).updated_at)

    update_order_details(order, user=admin_user, customer_email="same@example.com")

    assert (order.history.count(), Order.objects.get(pk=order.pk).updated_at) == before


def test_update_order_details_needs_the_change_permission(make_order, staff_user):
    order = make_order(S.PAID)

    with pytest.raises(PermissionDenied):
        update_order_details(order, user=staff_user, customer_email="x@example.com")

    assert Order.objects.get(pk=order.pk).customer_email == ""


def test_update_order_details_refuses_an_invalid_address(make_order, admin_user):
    order = make_order(S.PAID)

    with pytest.raises(InvalidOrder, match="not a valid email"):
        update_order_details(order, user=admin_user, customer_email="not an address")


def test_update_order_details_without_a_user_is_the_system_channel(make_order):
    order = make_order(S.PAID)

    saved = update_order_details(order, user=None, customer_email="x@example.com")

    latest = saved.history.first()
    assert (latest.history_user, latest.channel) == (None, "system")
