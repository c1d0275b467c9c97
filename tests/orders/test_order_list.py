"""The order list: what a row shows, its filters, search, counting and list action."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from orders.admin_list import OrderListPaginator
from orders.models import Order
from orders.models import PaymentStatus as S
from orders.services import override_status, place_order
from payments.models import EventOutcome, GatewayEvent
from tests.factories import next_number
from tests.payments.callbacks import body_for, post

pytestmark = pytest.mark.django_db

URL = reverse("admin:orders_order_changelist")


@pytest.fixture
def admin_client_(client, admin_user):
    client.force_login(admin_user)
    return client


def flagged(make_order, supervisor, status=S.PAID, to=S.CANCELLED) -> Order:
    return override_status(
        make_order(status), to, user=supervisor, reason="x", allow_discouraged=True
    )


def ignored_event_order(client, make_order) -> Order:
    """An authorized order with a second hold: its event is ignored, the order flagged."""
    order = make_order(S.AUTHORIZED)
    post(client, body_for(order.number, "payment.authorized", transaction=f"hold-{order.number}"))
    return Order.objects.get(pk=order.pk)


def shown(response) -> list[str]:
    return [order.number for order in response.context["cl"].result_list]


def test_a_row_shows_the_badge_amounts_on_one_line_and_the_reason_as_text(
    admin_client_, make_order, supervisor
):
    ok = make_order(S.PARTIALLY_PAID)
    bad = flagged(make_order, supervisor)

    page = admin_client_.get(URL).text

    assert '<span class="status-badge status-partially_paid">Partially paid</span>' in page
    assert '<span class="order-money">100.00 USD</span>' in page  # a total
    assert '<span class="order-money">50.00 USD</span>' in page  # what ok keeps
    assert "Money kept, status unpaid" in page
    assert 'title="Money has been captured and kept (100.00 USD) but the status is Cancelled."' in (
        page
    )
    assert ok.number in page and bad.number in page


@pytest.mark.parametrize(
    "query",
    [{}, {"attention": "yes"}, {"q": "T0"}, {"status__exact": "paid"}, {"method_kind": "online"}],
    ids=["default", "attention", "search", "status", "kind"],
)
def test_the_list_runs_as_many_queries_for_100_orders_as_for_5(
    admin_client_, make_order, supervisor, query
):
    def queries() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as captured:
            response = admin_client_.get(URL, query)
        assert response.status_code == 200
        return len(captured), len(response.context["cl"].result_list)

    for _ in range(3):
        make_order(S.PAID)
    for _ in range(2):
        flagged(make_order, supervisor)
    few, few_rows = queries()
    for _ in range(60):
        make_order(S.PAID)
    for _ in range(35):
        flagged(make_order, supervisor)
    many, many_rows = queries()

    assert many_rows > few_rows > 0
    assert few > 3  # the session, the user, the count and the rows at least
    assert many == few


def test_filters_status_method_kind_attention_and_placed_date(
    admin_client_, make_order, supervisor, offline_method
):
    online_paid = make_order(S.PAID)
    bad = flagged(make_order, supervisor)
    offline = place_order(
        number=next_number(), total="10.00", currency="USD", payment_method=offline_method
    )
    old = place_order(
        number=next_number(),
        total="10.00",
        currency="USD",
        payment_method=offline_method,
        placed_at=timezone.now() - timedelta(days=40),
    )
    week_ago = str(timezone.now() - timedelta(days=7))
    tomorrow = str(timezone.now() + timedelta(days=1))

    assert shown(admin_client_.get(URL, {"status__exact": "paid"})) == [online_paid.number]
    assert set(shown(admin_client_.get(URL, {"method_kind": "offline"}))) == {
        offline.number,
        old.number,
    }
    assert shown(admin_client_.get(URL, {"attention": "yes"})) == [bad.number]
    recent = shown(admin_client_.get(URL, {"placed_at__gte": week_ago, "placed_at__lt": tomorrow}))
    assert set(recent) == {online_paid.number, bad.number, offline.number}
    # The placed-date filter offers the usual choices; no date hierarchy.
    page = admin_client_.get(URL)
    assert page.context["cl"].date_hierarchy is None
    assert "Past 7 days" in page.text and "This month" in page.text


def test_an_unknown_method_kind_is_ignored_not_an_error(admin_client_, make_order):
    order = make_order(S.PAID)

    response = admin_client_.get(URL, {"method_kind": "carrier-pigeon"})

    assert response.status_code == 200
    assert shown(response) == [order.number]


def test_search_by_number_part_email_and_gateway_reference(admin_client_, online_method):
    from payments.gateways.base import CheckoutOutcome, PaymentResult

    target = place_order(
        number="ZX-48151",
        total="10.00",
        currency="USD",
        payment_method=online_method,
        customer_email="ada@example.com",
        initial=PaymentResult(CheckoutOutcome.AUTHORIZED, reference="pi_4242", amount=None),
    )
    place_order(number="QQ-1", total="10.00", currency="USD", payment_method=online_method)

    for term in ["ZX-48151", "4815", "zx-48", "ADA@example", "pi_4242"]:
        assert shown(admin_client_.get(URL, {"q": term})) == [target.number], term


def test_the_count_stops_at_the_cap_and_says_so(admin_client_, make_order, monkeypatch):
    monkeypatch.setattr(OrderListPaginator, "COUNT_CAP", 3)
    for _ in range(5):
        make_order(S.PAID)

    response = admin_client_.get(URL, {"status__exact": "paid"})

    assert response.context["cl"].result_count == 3
    assert "more than 3 orders" in response.text
    searched = admin_client_.get(URL, {"q": "T0"})
    assert "more than 3 results" in searched.text
    # Selecting across pages names no number the selection would not match.
    assert "Select all matching orders" in response.text
    assert "Select all 3 orders" not in response.text


def test_a_small_list_is_counted_exactly(admin_client_, make_order):
    for _ in range(2):
        make_order(S.PAID)

    response = admin_client_.get(URL)

    assert response.context["cl"].result_count == 2
    assert "2 orders" in response.text


@pytest.mark.postgres
def test_a_large_unfiltered_list_is_counted_from_the_planner_estimate(
    admin_client_, make_order, monkeypatch
):
    monkeypatch.setattr(OrderListPaginator, "ESTIMATE_ABOVE", 3)
    for _ in range(6):
        make_order(S.PAID)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orders_order")

    with CaptureQueriesContext(connection) as captured:
        response = admin_client_.get(URL)

    assert response.context["cl"].paginator.is_estimate
    assert response.context["cl"].result_count == 6
    assert "about 6 orders" in response.text
    assert not any("COUNT(" in query["sql"].upper() for query in captured.captured_queries)


@pytest.mark.postgres
@pytest.mark.parametrize("column", ["number", "customer_email", "gateway_reference"])
def test_search_can_use_the_trigram_indexes(admin_client_, make_order, column):
    make_order(S.PAID)
    # A table this small is best read whole; rule the plain scans out to see
    # whether the planner can match the search to its index at all.
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
    term = {"number": "T00", "customer_email": "example", "gateway_reference": "tx_"}[column]
    request_queryset = Order.objects.filter(**{f"{column}__icontains": term}).order_by()

    with connection.cursor() as cursor:
        sql, params = request_queryset.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert f"order_{column}_trgm" in plan, plan


@pytest.fixture
def acknowledger(django_user_model):
    user = django_user_model.objects.create_user(username="ack", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_order", "acknowledge_gatewayevent"])
    )
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def viewer(django_user_model):
    user = django_user_model.objects.create_user(username="viewer", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_order", "change_order"])
    )
    return django_user_model.objects.get(pk=user.pk)


def acknowledge(client, orders):
    return client.post(
        URL,
        {
            "action": "acknowledge_gateway_events",
            "_selected_action": [order.pk for order in orders],
            "index": 0,
        },
        follow=True,
    )


def test_list_action_acknowledges_the_selected_orders_events(client, make_order, acknowledger):
    first = ignored_event_order(client, make_order)
    second = ignored_event_order(client, make_order)
    other = ignored_event_order(client, make_order)
    client.force_login(acknowledger)

    response = acknowledge(client, [first, second])

    assert response.status_code == 200
    assert "2 gateway events acknowledged on the 2 selected order(s)." in response.text
    assert GatewayEvent.objects.filter(acknowledged_by=acknowledger).count() == 2
    assert set(Order.objects.needing_attention().values_list("number", flat=True)) == {other.number}
    again = acknowledge(client, [first])
    assert "no gateway events to acknowledge" in again.text


def test_list_action_is_refused_without_the_permission(client, make_order, viewer):
    order = ignored_event_order(client, make_order)
    client.force_login(viewer)

    page = client.get(URL)
    response = acknowledge(client, [order])

    assert "acknowledge_gateway_events" not in page.text
    assert response.status_code in (200, 403)
    assert not GatewayEvent.objects.filter(acknowledged_at__isnull=False).exists()
    assert GatewayEvent.objects.get(order=order).outcome == EventOutcome.IGNORED
    assert Order.objects.get(pk=order.pk).attention_code == "ignored_event"


def test_the_action_itself_refuses_without_the_permission(rf, make_order, viewer):
    from django.contrib import admin
    from django.core.exceptions import PermissionDenied

    from orders.admin_list import acknowledge_gateway_events

    request = rf.post(URL)
    request.user = viewer
    with pytest.raises(PermissionDenied):
        acknowledge_gateway_events(admin.site._registry[Order], request, Order.objects.all())


@pytest.mark.parametrize(
    "query",
    [
        "placed_at__year=0",
        "placed_at__year=-1",
        "placed_at__year=99999999999999999999",
        "placed_at__year=2026&placed_at__month=13",
        "placed_at__gte=yesterday",
        "placed_at__gte=2026-02-30",
    ],
)
def test_impossible_dates_are_bad_filters_not_errors(admin_client_, make_order, query):
    make_order(S.PAID)

    response = admin_client_.get(f"{URL}?{query}")

    # Django's answer to a bad filter: back to the list, flagged with ?e=1
    # (or an empty list for a month that cannot match).
    assert response.status_code in (200, 302), query
    if response.status_code == 302:
        assert response["Location"].endswith("?e=1")
