"""check_ledger_totals: running totals that are not the sums of the ledger are reported."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orders.models import Order
from orders.models import PaymentStatus as S
from payments.ledger_totals import ledger_totals_mismatches
from payments.services import apply_gateway_event
from tests.factories import event

pytestmark = pytest.mark.django_db


def check() -> str:
    out = StringIO()
    call_command("check_ledger_totals", stdout=out, stderr=StringIO())
    return out.getvalue()


def set_totals(order, **totals):
    # A write that bypasses the ledger, as a whole-row save of a stale order did.
    Order.objects.filter(pk=order.pk).update(**totals)


def test_agreeing_totals_exit_0(make_order):
    for status in S.values:
        make_order(status)
    apply_gateway_event(make_order(S.AUTHORIZED), event("captured", "30.10"))

    assert check() == (
        "Running totals agree with the ledger for every order.\n"
        "Stored attention agrees with the rules for every order.\n"
    )


def test_each_order_that_disagrees_is_printed_and_the_exit_status_is_1(make_order):
    fine = make_order(S.PAID)
    erased = make_order(S.PARTIALLY_PAID)  # 50.00 captured
    apply_gateway_event(erased, event("captured", "30.00"))
    set_totals(erased, captured_amount=Decimal("50.00"))
    nothing_recorded = make_order(S.AWAITING_PAYMENT)
    set_totals(nothing_recorded, captured_amount=Decimal("20.00"), refunded_amount=Decimal("5.00"))
    refunds_lost = make_order(S.REFUNDED)
    set_totals(refunds_lost, refunded_amount=Decimal("0.00"))

    out = StringIO()
    with pytest.raises(CommandError, match="3 order") as raised:
        call_command("check_ledger_totals", stdout=out, stderr=StringIO())

    assert raised.value.returncode == 1
    lines = out.getvalue().splitlines()
    assert lines == [
        f"{erased.number}: captured 50.00 USD, ledger captures 80.00 USD; "
        "refunded 0.00 USD, ledger refunds 0.00 USD",
        f"{nothing_recorded.number}: captured 20.00 USD, ledger captures 0.00 USD; "
        "refunded 5.00 USD, ledger refunds 0.00 USD",
        f"{refunds_lost.number}: captured 100.00 USD, ledger captures 100.00 USD; "
        "refunded 0.00 USD, ledger refunds 100.00 USD",
    ]
    assert fine.number not in out.getvalue()


def test_the_check_is_one_query_whatever_the_number_of_orders(
    make_order, django_assert_num_queries
):
    orders = [make_order(S.PARTIALLY_PAID) for _ in range(12)]
    for order in orders[::3]:
        set_totals(order, captured_amount=Decimal("1.00"))

    with django_assert_num_queries(1):
        found = list(ledger_totals_mismatches(chunk_size=5))

    assert [m.number for m in found] == [o.number for o in orders[::3]]
