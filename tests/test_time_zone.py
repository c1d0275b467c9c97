"""Dates in the admin name their time zone, the one TIME_ZONE sets."""

import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse

from orders.services import place_order
from tests.factories import next_number

ROOT = Path(__file__).resolve().parent.parent
# 09:14 UTC on a winter day: 10:14 in Paris (CET, UTC+1).
PLACED = datetime(2026, 11, 23, 9, 14, tzinfo=UTC)


@pytest.fixture
def order(online_method):
    return place_order(
        number=next_number(),
        total=Decimal("20.00"),
        currency="USD",
        payment_method=online_method,
        placed_at=PLACED,
    )


def page(client, url) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_the_order_list_shows_dates_with_their_zone(admin_client, order):
    html = page(admin_client, reverse("admin:orders_order_changelist"))

    assert "23 Nov 2026, 09:14 UTC" in html


@pytest.mark.django_db
def test_the_order_page_shows_dates_with_their_zone(admin_client, order):
    html = page(admin_client, reverse("admin:orders_order_change", args=[order.pk]))

    assert "23 Nov 2026, 09:14 UTC" in html


@pytest.mark.django_db
def test_dates_follow_the_configured_zone(admin_client, order, settings):
    settings.TIME_ZONE = "Europe/Paris"

    listing = page(admin_client, reverse("admin:orders_order_changelist"))
    change = page(admin_client, reverse("admin:orders_order_change", args=[order.pk]))

    assert "23 Nov 2026, 10:14 CET" in listing
    assert "23 Nov 2026, 10:14 CET" in change
    assert "09:14 UTC" not in listing + change


@pytest.mark.django_db
def test_the_history_list_shows_dates_with_their_zone(admin_client, order, settings):
    settings.TIME_ZONE = "Europe/Paris"
    order.history.update(history_date=PLACED)

    html = page(admin_client, reverse("admin:orders_order_history", args=[order.pk]))

    assert "23 Nov 2026, 10:14 CET" in html


def settings_with(**env):
    """Load the real settings in a fresh interpreter with only ``env``; print TIME_ZONE."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import orderflow.wsgi; from django.conf import settings; print(settings.TIME_ZONE)",
        ],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "DJANGO_DEBUG": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_time_zone_comes_from_the_environment_and_defaults_to_utc():
    default = settings_with()
    paris = settings_with(TIME_ZONE="Europe/Paris")

    assert (default.returncode, default.stdout) == (0, "UTC\n"), default.stderr
    assert (paris.returncode, paris.stdout) == (0, "Europe/Paris\n"), paris.stderr


def test_an_unknown_time_zone_is_a_clear_startup_error():
    result = settings_with(TIME_ZONE="Mars/Olympus_Mons")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "TIME_ZONE='Mars/Olympus_Mons' is not a time zone" in result.stderr


@pytest.mark.django_db
@pytest.mark.parametrize(
    "page_name", ["payments_paymenttransaction_changelist", "payments_gatewayevent_changelist"]
)
def test_the_ledger_and_event_lists_show_dates_with_their_zone(
    admin_client, order, settings, page_name
):
    from payments.models import GatewayEvent, PaymentTransaction
    from payments.services import apply_gateway_event
    from tests.factories import event

    apply_gateway_event(order, event("captured", "20.00"))
    GatewayEvent.objects.create(
        payment_method=order.payment_method,
        event_id="evt_tz",
        event_type="payment.captured",
        order=order,
        raw_body="{}",
    )
    PaymentTransaction.objects.update(created_at=PLACED)
    GatewayEvent.objects.update(received_at=PLACED)
    settings.TIME_ZONE = "Europe/Paris"

    html = page(admin_client, reverse(f"admin:{page_name}"))

    assert "23 Nov 2026, 10:14 CET" in html
