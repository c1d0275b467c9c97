"""
What one callback costs the database: the statements the callback path sends.

A callback's time is mostly the statements the ORM compiles and the round
trips they take, so their number is part of the path's contract: these
tests fail when a change adds one (a second read of the order, a look-up the
insert already does, a savepoint nothing needs). Counted on each database,
in autocommit mode as in production, transaction statements apart.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders.models import PaymentStatus as S
from payments.models import EventOutcome, GatewayEvent, PaymentTransaction
from tests.payments.callbacks import body_for, post

pytestmark = pytest.mark.django_db(transaction=True)

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def _statements(client, body) -> tuple[list[str], list[str]]:
    """Post a callback; return its statements and its transaction control statements."""
    with CaptureQueriesContext(connection) as captured:
        response = post(client, body)
    assert response.status_code == 200, response.content
    sqls = [query["sql"] for query in captured.captured_queries]
    control = [sql for sql in sqls if sql.lstrip().upper().startswith(TRANSACTION_CONTROL)]
    return [sql for sql in sqls if sql not in control], control


def test_a_capture_callback_sends_eleven_statements_and_no_savepoint(client, make_order):
    order = make_order(S.AUTHORIZED)

    statements, control = _statements(
        client, body_for(order.number, "payment.captured", amount="100.00")
    )

    # The method; the event stored (its order found in the same INSERT); then
    # in one transaction: the event locked, the order locked, the ledger row
    # (INSERT ... ON CONFLICT), the order's status and total in one UPDATE,
    # the history record, the event's outcome, whether any fact waits, the
    # attention rules; after it, callbacks kept as not ours that it may explain.
    assert len(statements) == 11, "\n".join(statements)
    assert not [sql for sql in control if "SAVEPOINT" in sql.upper()]
    order.refresh_from_db()
    assert order.status == S.PAID
    assert order.history.count() == 3  # placed, authorized, paid
    assert PaymentTransaction.objects.filter(order=order, kind="capture").count() == 1
    assert GatewayEvent.objects.get(order=order, kind="captured").outcome == EventOutcome.APPLIED


def test_a_redelivered_callback_stops_at_the_event_lock(client, make_order):
    order = make_order(S.AUTHORIZED)
    body = body_for(order.number, "payment.captured", amount="100.00")
    post(client, body)

    statements, control = _statements(client, body)

    # The method, the INSERT that finds the event stored, reading it back to
    # compare the bodies, and the event's row lock: already applied.
    assert len(statements) == 4, "\n".join(statements)
    assert not [sql for sql in control if "SAVEPOINT" in sql.upper()]
    assert PaymentTransaction.objects.filter(order=order, kind="capture").count() == 1
