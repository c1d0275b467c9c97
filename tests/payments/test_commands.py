"""replay_gateway_events and send_test_callback."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orders.models import PaymentStatus as S
from orders.services import place_order
from payments.models import EventOutcome, GatewayEvent
from tests.payments.callbacks import body_for, post

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_send_test_callback_applies_in_process(make_order):
    order = make_order(S.AUTHORIZED)

    out = run(
        "send_test_callback",
        "--method",
        "testpay",
        "--order",
        order.number,
        "--type",
        "payment.captured",
        "--amount",
        "100.00",
    )

    assert 'HTTP 200 {"status": "applied", "order_status": "paid"}' in out
    order.refresh_from_db()
    assert order.status == S.PAID
    assert order.history.first().channel == "gateway"


def test_send_test_callback_defaults_the_amount_to_what_is_left(make_order):
    order = make_order(S.AUTHORIZED)

    run(
        "send_test_callback",
        "--method",
        "testpay",
        "--order",
        order.number,
        "--type",
        "payment.captured",
    )

    order.refresh_from_db()
    assert order.status == S.PAID


def test_send_test_callback_refuses_non_hmac_methods(make_order):
    from tests.factories import PaymentMethodFactory

    PaymentMethodFactory(code="stripe", gateway="stripe")
    with pytest.raises(CommandError, match="hmac gateway only"):
        run(
            "send_test_callback",
            "--method",
            "stripe",
            "--order",
            "X",
            "--type",
            "payment.authorized",
        )


def test_send_test_callback_never_prints_the_secret(make_order, online_method):
    order = make_order(S.AUTHORIZED)

    out = run(
        "send_test_callback",
        "--method",
        "testpay",
        "--order",
        order.number,
        "--type",
        "payment.authorized",
    )

    assert online_method.webhook_secret not in out


def test_replay_applies_unmatched_events_once_the_order_exists(client, online_method):
    post(client, body_for("LATE1", "payment.authorized", transaction="pi_late"))
    assert GatewayEvent.objects.get().outcome == EventOutcome.UNMATCHED
    with pytest.raises(CommandError, match="still failed or unmatched"):
        run("replay_gateway_events")

    order = place_order(number="LATE1", total="20.00", currency="USD", payment_method=online_method)
    dry = run("replay_gateway_events", "--dry-run")
    out = run("replay_gateway_events", "--order", "LATE1")

    assert "1 event(s) would be replayed (dry run)" in dry
    assert "Replayed 1 event(s): 1 applied." in out
    order.refresh_from_db()
    assert order.status == S.AUTHORIZED
    assert order.history.first().channel == "command"
    assert "Replay of gateway event" in order.history.first().history_change_reason
    assert run("replay_gateway_events") == "No gateway events to replay.\n"


def test_replay_filters(client, online_method):
    post(client, body_for("GONE1", "payment.authorized"))

    assert "No gateway events" in run("replay_gateway_events", "--method", "other")
    assert "No gateway events" in run("replay_gateway_events", "--outcome", "failed")
    assert "would be replayed" in run("replay_gateway_events", "--newer-than", "1h", "--dry-run")
    with pytest.raises(CommandError, match="not an age"):
        run("replay_gateway_events", "--newer-than", "soon")


def test_admin_replay_and_acknowledge_actions_check_permissions(
    client, online_method, staff_user, admin_user, make_order
):
    from django.urls import reverse

    post(client, body_for("LATE2", "payment.authorized"))
    late = GatewayEvent.objects.get(outcome="unmatched")
    # A second authorization of an authorized order: ignored, the order flagged.
    held = make_order(S.AUTHORIZED)
    post(client, body_for(held.number, "payment.authorized", transaction="tx_second_hold"))
    url = reverse("admin:payments_gatewayevent_changelist")
    ids = [str(pk) for pk in GatewayEvent.objects.values_list("pk", flat=True)]

    from django.contrib.auth.models import Permission

    staff_user.user_permissions.add(Permission.objects.get(codename="view_gatewayevent"))
    client.force_login(staff_user)
    for action in ["replay", "acknowledge"]:
        refused = client.post(url, {"action": action, "_selected_action": ids})
        # The list is shown, without the action to run.
        assert refused.status_code == 200
        assert f'value="{action}"' not in refused.text
    assert not GatewayEvent.objects.filter(acknowledged_at__isnull=False).exists()
    assert GatewayEvent.objects.get(pk=late.pk).attempts == 1

    client.force_login(admin_user)
    place_order(number="LATE2", total="20.00", currency="USD", payment_method=online_method)
    for action in ["replay", "acknowledge"]:
        done = client.post(url, {"action": action, "_selected_action": ids})
        assert (done.status_code, done.url) == (302, url)

    assert GatewayEvent.objects.get(pk=late.pk).outcome == "applied"
    held.refresh_from_db()
    assert not held.needs_attention
    ack = GatewayEvent.objects.get(reference="tx_second_hold")
    assert ack.acknowledged_by == admin_user
