"""The gateway event admin: attention, links, the body, and per-event replay and acknowledge."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from orders.models import Order
from orders.models import PaymentStatus as S
from orders.services import place_order
from payments.models import EventOutcome, GatewayEvent
from tests.payments.callbacks import body_for, post

pytestmark = pytest.mark.django_db

ALERT_ICON = "admin/img/icon-alert.svg"


def stored(method, event_id, outcome, *, kind="", order=None, raw_body="{}", **fields):
    return GatewayEvent.objects.create(
        payment_method=method,
        event_id=event_id,
        event_type="payment.test",
        outcome=outcome,
        kind=kind,
        order=order,
        raw_body=raw_body,
        **fields,
    )


def page_of(event) -> str:
    return reverse("admin:payments_gatewayevent_change", args=[event.pk])


def replay_url(event) -> str:
    return reverse("admin:payments_gatewayevent_replay", args=[event.pk])


def acknowledge_url(event) -> str:
    return reverse("admin:payments_gatewayevent_acknowledge", args=[event.pk])


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def viewer(django_user_model):
    """Staff who may look at gateway events, and nothing more."""
    user = django_user_model.objects.create_user(username="viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_gatewayevent"))
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def unmatched(client, online_method):
    """A callback for an order that did not exist yet; the order exists now."""
    post(client, body_for("LATE9", "payment.authorized", transaction="pi_late9"))
    event = GatewayEvent.objects.get(outcome=EventOutcome.UNMATCHED)
    place_order(number="LATE9", total="20.00", currency="USD", payment_method=online_method)
    return event


@pytest.fixture
def ignored(client, make_order):
    """A second authorization of an authorized order: ignored, its order flagged."""
    held = make_order(S.AUTHORIZED)
    post(client, body_for(held.number, "payment.authorized", transaction="tx_second_hold"))
    return GatewayEvent.objects.get(reference="tx_second_hold", outcome=EventOutcome.IGNORED)


def test_attention_column_warns_only_on_events_that_need_attention(admin_client, online_method):
    now = timezone.now()
    flagged = {
        stored(online_method, "ignored-fact", EventOutcome.IGNORED, kind="authorized"),
        stored(online_method, "conflict", EventOutcome.CONFLICT, kind="captured"),
        stored(online_method, "failed", EventOutcome.FAILED),
        stored(online_method, "stuck", EventOutcome.RECEIVED),
        stored(online_method, "lost", EventOutcome.APPLIED, kind="dispute_lost"),
    }
    healthy = {
        stored(online_method, "applied", EventOutcome.APPLIED, kind="captured"),
        stored(online_method, "ignored-no-fact", EventOutcome.IGNORED),
        stored(
            online_method,
            "ignored-seen",
            EventOutcome.IGNORED,
            kind="authorized",
            acknowledged_at=now,
        ),
        stored(
            online_method,
            "lost-seen",
            EventOutcome.APPLIED,
            kind="dispute_lost",
            acknowledged_at=now,
        ),
        stored(online_method, "fresh", EventOutcome.RECEIVED),
        stored(online_method, "stale", EventOutcome.STALE, kind="authorized"),
    }
    GatewayEvent.objects.filter(event_id="stuck").update(received_at=now - timedelta(minutes=6))

    response = admin_client.get(reverse("admin:payments_gatewayevent_changelist"))

    assert response.status_code == 200
    shown = {event.event_id for event in response.context["cl"].result_list}
    warned = {e.event_id for e in response.context["cl"].result_list if e.needs_attention}
    assert shown == {e.event_id for e in flagged | healthy}
    assert warned == {e.event_id for e in flagged}
    assert response.text.count(ALERT_ICON) == len(flagged)
    # No tick or cross: healthy rows show nothing at all.
    assert "icon-yes.svg" not in response.text
    assert "icon-no.svg" not in response.text


def test_order_number_links_to_the_order_page(admin_client, online_method, make_order):
    order = make_order()
    stored(online_method, "evt_linked", EventOutcome.APPLIED, order=order)

    response = admin_client.get(reverse("admin:payments_gatewayevent_changelist"))

    order_page = reverse("admin:orders_order_change", args=[order.pk])
    assert f'<a href="{order_page}">{order.number}</a>' in response.text


def test_event_page_shows_a_json_body_indented_and_read_only(admin_client, online_method):
    event = stored(
        online_method,
        "evt_json",
        EventOutcome.APPLIED,
        raw_body='{"id":"evt_json","data":{"amount":"1.00"}}',
    )

    response = admin_client.get(page_of(event))

    assert response.status_code == 200
    assert (
        '<pre class="gateway-event-body">{\n  &quot;id&quot;: &quot;evt_json&quot;,\n'
        "  &quot;data&quot;: {\n    &quot;amount&quot;: &quot;1.00&quot;\n  }\n}</pre>"
    ) in response.text
    assert 'name="raw_body"' not in response.text


def test_event_page_shows_a_body_that_is_not_json_as_stored(admin_client, online_method):
    event = stored(online_method, "evt_text", EventOutcome.REJECTED, raw_body="id=1&<b>x</b>")

    response = admin_client.get(page_of(event))

    assert '<pre class="gateway-event-body">id=1&amp;&lt;b&gt;x&lt;/b&gt;</pre>' in response.text


def test_replay_button_shows_only_on_replayable_events_for_who_may_replay(
    client, admin_user, viewer, unmatched, ignored
):
    client.force_login(admin_user)
    assert f'action="{replay_url(unmatched)}"' in client.get(page_of(unmatched)).text
    assert f'action="{replay_url(ignored)}"' not in client.get(page_of(ignored)).text

    client.force_login(viewer)
    page = client.get(page_of(unmatched))
    assert page.status_code == 200
    assert f'action="{replay_url(unmatched)}"' not in page.text


def test_acknowledge_button_shows_only_on_acknowledgeable_events_for_who_may_acknowledge(
    client, admin_user, viewer, unmatched, ignored
):
    client.force_login(admin_user)
    assert f'action="{acknowledge_url(ignored)}"' in client.get(page_of(ignored)).text
    assert f'action="{acknowledge_url(unmatched)}"' not in client.get(page_of(unmatched)).text

    client.force_login(viewer)
    page = client.get(page_of(ignored))
    assert page.status_code == 200
    assert f'action="{acknowledge_url(ignored)}"' not in page.text


def test_replay_button_replays_the_event_and_says_what_came_of_it(client, admin_user, unmatched):
    client.force_login(admin_user)

    response = client.post(replay_url(unmatched))

    assert (response.status_code, response.url) == (302, page_of(unmatched))
    unmatched.refresh_from_db()
    assert unmatched.outcome == EventOutcome.APPLIED
    assert unmatched.order.status == S.AUTHORIZED
    assert said(response) == [f"Replayed event {unmatched.event_id}: Applied. {unmatched.detail}"]


def test_replay_button_refuses_an_event_that_is_not_replayable(client, admin_user, ignored):
    client.force_login(admin_user)
    before = GatewayEvent.objects.values().get(pk=ignored.pk)

    response = client.post(replay_url(ignored))

    assert (response.status_code, response.url) == (302, page_of(ignored))
    assert GatewayEvent.objects.values().get(pk=ignored.pk) == before
    assert "only failed or unmatched events are replayed" in said(response)[0]


def test_acknowledge_button_acknowledges_the_event(client, admin_user, ignored):
    client.force_login(admin_user)

    response = client.post(acknowledge_url(ignored))

    assert (response.status_code, response.url) == (302, page_of(ignored))
    ignored.refresh_from_db()
    assert ignored.acknowledged_by == admin_user
    assert not Order.objects.get(pk=ignored.order_id).needs_attention
    assert said(response) == [
        f"Acknowledged event {ignored.event_id}: its order no longer needs attention for it."
    ]


def test_acknowledge_button_changes_nothing_on_an_event_that_needs_no_acknowledging(
    client, admin_user, unmatched
):
    client.force_login(admin_user)

    response = client.post(acknowledge_url(unmatched))

    assert response.status_code == 302
    unmatched.refresh_from_db()
    assert unmatched.acknowledged_at is None
    assert said(response) == [
        f"Event {unmatched.event_id} does not need acknowledging; nothing changed."
    ]


def test_crafted_posts_without_the_permission_are_refused(client, viewer, unmatched, ignored):
    client.force_login(viewer)
    before = list(GatewayEvent.objects.order_by("pk").values())

    replayed = client.post(replay_url(unmatched))
    acknowledged = client.post(acknowledge_url(ignored))

    assert (replayed.status_code, acknowledged.status_code) == (403, 403)
    assert list(GatewayEvent.objects.order_by("pk").values()) == before


def test_buttons_need_the_view_permission_too(client, django_user_model, unmatched, ignored):
    user = django_user_model.objects.create_user(username="blind", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["replay_gatewayevent", "acknowledge_gatewayevent"])
    )
    client.force_login(user)
    before = list(GatewayEvent.objects.order_by("pk").values())

    assert client.post(replay_url(unmatched)).status_code == 403
    assert client.post(acknowledge_url(ignored)).status_code == 403
    assert list(GatewayEvent.objects.order_by("pk").values()) == before


def test_buttons_only_answer_posts(client, admin_user, unmatched, ignored):
    client.force_login(admin_user)

    assert client.get(replay_url(unmatched)).status_code == 405
    assert client.get(acknowledge_url(ignored)).status_code == 405
    unmatched.refresh_from_db()
    assert unmatched.outcome == EventOutcome.UNMATCHED


def test_buttons_need_a_csrf_token(admin_user, unmatched):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)

    assert browser.post(replay_url(unmatched)).status_code == 403
    page = browser.get(page_of(unmatched))
    token = page.context["csrf_token"]
    assert browser.post(replay_url(unmatched), {"csrfmiddlewaretoken": token}).status_code == 302
    unmatched.refresh_from_db()
    assert unmatched.outcome == EventOutcome.APPLIED
