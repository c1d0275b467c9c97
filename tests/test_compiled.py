"""orderflow.compiled: a query compiled once gives what the ORM gives, every time."""

import sqlite3

import pytest
from django.db import connection
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from orderflow.compiled import CompiledQuery, mark_int, mark_str
from orders.models import Order
from orders.models import PaymentStatus as S
from payments.models import GatewayEvent

pytestmark = pytest.mark.django_db


def _by_number(number):
    return Order.objects.filter(number=number).order_by()


def test_instances_equal_what_the_orm_loads_field_for_field(make_order):
    orders = [make_order(S.PAID), make_order(S.AUTHORIZED)]
    query = CompiledQuery("test_order_by_number", Order, _by_number, mark_str(0))

    for order in orders:
        (loaded,) = query.instances(order.number)
        expected = Order.objects.get(pk=order.pk)
        for field in Order._meta.concrete_fields:
            # Dates, decimals and the status come back converted as the ORM converts them.
            assert getattr(loaded, field.attname) == getattr(expected, field.attname), field.name
        assert loaded._state.adding is False
        assert loaded.net_paid_amount == expected.net_paid_amount
    assert query.instances("no such number") == []


def test_compiled_once_then_only_run(make_order):
    order = make_order(S.PAID)
    query = CompiledQuery(
        "test_number_of_id",
        Order,
        lambda pk: Order.objects.filter(pk=pk).values_list("number"),
        mark_int(0),
    )
    assert query.rows(order.pk) == [(order.number,)]

    with CaptureQueriesContext(connection) as captured:
        assert query.rows(order.pk) == [(order.number,)]
        assert query.rows(-1) == []
    assert len(captured) == 2


def test_a_marker_used_twice_or_not_at_all_is_refused(make_order):
    make_order(S.PAID)
    twice = CompiledQuery(
        "test_marker_twice",
        Order,
        lambda n: Order.objects.filter(number=n) | Order.objects.filter(gateway_reference=n),
        mark_str(0),
    )
    with pytest.raises(ValueError, match="once"):
        twice.rows("x")
    unused = CompiledQuery("test_marker_unused", Order, lambda n: Order.objects.all(), mark_str(0))
    with pytest.raises(ValueError, match="once"):
        unused.rows("x")


def test_instances_need_whole_rows():
    partial = CompiledQuery(
        "test_partial_rows",
        GatewayEvent,
        lambda pk: GatewayEvent.objects.filter(pk=pk).values_list("pk"),
        mark_int(0),
    )
    with pytest.raises(ValueError, match="whole rows"):
        partial.instances(1)


def test_the_wrong_number_of_values_is_refused():
    query = CompiledQuery("test_values_count", Order, _by_number, mark_str(0))
    with pytest.raises(TypeError, match="1 values expected"):
        query.rows("a", "b")


def test_a_name_taken_already_is_refused():
    CompiledQuery("test_name_once", Order, _by_number, mark_str(0))
    with pytest.raises(ValueError, match="test_name_once"):
        CompiledQuery("test_name_once", Order, _by_number, mark_str(0))


_LOCKING = CompiledQuery(
    "test_locking_by_number",
    Order,
    lambda number: Order.objects.locking().filter(number=number).order_by(),
    mark_str(0),
)


@pytest.mark.django_db(transaction=True)
def test_a_locking_query_is_refused_outside_a_transaction(make_order):
    order = make_order(S.PAID)
    assert _LOCKING.locks

    with pytest.raises(TransactionManagementError, match="outside of a transaction"):
        _LOCKING.instances(order.number)

    from django.db import transaction

    with transaction.atomic():
        assert [o.pk for o in _LOCKING.instances(order.number)] == [order.pk]


def test_an_sqlite_too_old_for_on_conflict_returning_is_reported(monkeypatch):
    import orders.checks
    from orders.checks import check_sqlite_version

    monkeypatch.setattr(orders.checks, "_uses_sqlite", lambda: True)
    assert check_sqlite_version(None) == []
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")

    (error,) = check_sqlite_version(None)
    assert error.id == "orders.E002"
    assert "3.34.1" in error.msg and "3.35" in error.msg
