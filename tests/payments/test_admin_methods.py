"""The payment method admin: write-only secrets, and a log that says what really changed."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.db.models import F
from django.urls import reverse

from payments.admin import PaymentMethodAdmin
from payments.models import PaymentMethod
from tests.admin_forms import assert_saved, browser_post_data, form_errors, post_change_form

pytestmark = pytest.mark.django_db

API_KEY = "sk_test_only_key"


@pytest.fixture
def method(online_method):
    PaymentMethod.objects.filter(pk=online_method.pk).update(api_key=API_KEY)
    return PaymentMethod.objects.get(pk=online_method.pk)


@pytest.fixture
def url(method):
    return reverse("admin:payments_paymentmethod_change", args=[method.pk])


@pytest.fixture
def admin_client_(client, admin_user):
    client.force_login(admin_user)
    return client


def logged_change() -> str:
    entry = LogEntry.objects.get()
    return entry.get_change_message()


def test_blank_secret_fields_are_not_logged_as_changes(admin_client_, method, url):
    response = post_change_form(admin_client_, url, name="Renamed gateway")

    assert_saved(response)
    assert logged_change() == "Changed Name."
    method.refresh_from_db()
    assert (method.name, method.webhook_secret, method.api_key) == (
        "Renamed gateway",
        "whsec_test_only_secret",
        API_KEY,
    )


def test_a_new_webhook_secret_is_logged_by_name_never_by_value(admin_client_, method, url):
    response = post_change_form(admin_client_, url, webhook_secret="whsec_rotated_value")

    assert_saved(response)
    assert logged_change() == "Changed Webhook secret."
    assert "whsec_rotated_value" not in LogEntry.objects.get().change_message
    method.refresh_from_db()
    assert (method.webhook_secret, method.api_key) == ("whsec_rotated_value", API_KEY)


def test_a_new_api_key_is_logged_by_name_never_by_value(admin_client_, method, url):
    response = post_change_form(admin_client_, url, api_key="sk_test_rotated_key")

    assert_saved(response)
    assert logged_change() == "Changed API key."
    assert "sk_test_rotated_key" not in LogEntry.objects.get().change_message
    method.refresh_from_db()
    assert (method.webhook_secret, method.api_key) == (
        "whsec_test_only_secret",
        "sk_test_rotated_key",
    )


def test_saving_the_page_unchanged_logs_no_change(admin_client_, method, url):
    response = post_change_form(admin_client_, url)

    assert_saved(response)
    assert logged_change() == "No fields changed."


def test_saving_keeps_rejected_callbacks_counted_meanwhile(admin_client_, method, url, monkeypatch):
    page = admin_client_.get(url)
    read = PaymentMethodAdmin.get_object

    def get_object(self, request, object_id, from_field=None):
        obj = read(self, request, object_id, from_field)
        # A callback refused for its signature, between the admin's read and write.
        PaymentMethod.objects.filter(pk=obj.pk).update(
            signature_failures=F("signature_failures") + 1
        )
        return obj

    monkeypatch.setattr(PaymentMethodAdmin, "get_object", get_object)
    response = admin_client_.post(url, browser_post_data(page, name="Renamed gateway"))

    assert_saved(response)
    method.refresh_from_db()
    assert (method.name, method.signature_failures) == ("Renamed gateway", 1)


def test_saving_the_page_unchanged_writes_no_history(admin_client_, method, url):
    before = method.history.count()

    assert_saved(post_change_form(admin_client_, url))

    assert method.history.count() == before


def test_a_replaced_secret_is_named_in_the_history_never_shown(admin_client_, method, url):
    assert_saved(post_change_form(admin_client_, url, webhook_secret="whsec_rotated_value"))

    record = method.history.latest("history_id")
    assert record.history_change_reason == "Replaced: Webhook secret."
    assert record.history_user is not None and record.channel == "admin"
    page = admin_client_.get(reverse("admin:payments_paymentmethod_history", args=[method.pk]))
    assert "Replaced: Webhook secret." in page.text
    assert "whsec_rotated_value" not in page.text


@pytest.mark.parametrize(
    "permissions", [["view_paymentmethod"], ["view_paymentmethod", "view_order"]]
)
def test_staff_who_may_only_view_a_method_never_see_its_secrets(
    client, django_user_model, method, url, permissions
):
    method.api_key = "sk_test_only_api_key_42"
    method.save(update_fields=["api_key"])
    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=permissions))
    client.force_login(viewer)

    page = client.get(url)

    assert page.status_code == 200
    assert "whsec_test_only_secret" not in page.text
    assert "sk_test_only_api_key_42" not in page.text
    assert method.code in page.text  # the page shows the method, read-only
    shown = {
        name
        for _title, options in page.context["adminform"].fieldsets
        for name in options["fields"]
    }
    assert {"secret_is_set", "api_key_is_set"} <= shown
    assert shown.isdisjoint({"webhook_secret", "api_key"})


def test_the_gateway_is_chosen_from_the_registered_adapters(admin_client_, url):
    page = admin_client_.get(url)

    field = page.context["adminform"].form.fields["gateway"]
    assert [value for value, _label in field.choices] == ["", "hmac", "stripe"]
    assert '<select name="gateway"' in page.text


def test_an_unregistered_gateway_is_refused(admin_client_, method, url):
    response = post_change_form(admin_client_, url, gateway="strpe")

    assert response.status_code == 200
    assert form_errors(response) == [
        "gateway: “strpe” is not a registered gateway. Choose one of: hmac, stripe."
    ]
    method.refresh_from_db()
    assert method.gateway == "hmac"


def test_an_offline_method_with_a_gateway_is_refused_on_the_gateway(admin_client_, offline_method):
    url = reverse("admin:payments_paymentmethod_change", args=[offline_method.pk])

    response = post_change_form(admin_client_, url, gateway="hmac")

    assert response.status_code == 200
    assert response.context["adminform"].form.errors.keys() == {"gateway"}
    assert "offline method has no gateway" in form_errors(response)[0]
    offline_method.refresh_from_db()
    assert offline_method.gateway == ""


def test_an_active_online_method_needs_a_webhook_secret(admin_client_, method, url):
    PaymentMethod.objects.filter(pk=method.pk).update(webhook_secret="")

    refused = post_change_form(admin_client_, url, name="Renamed gateway")
    inactive = post_change_form(admin_client_, url, name="Renamed gateway", is_active=None)

    assert refused.status_code == 200
    assert form_errors(refused) == [
        "webhook_secret: An active online method needs a webhook secret: without one every "
        "callback from its gateway is refused."
    ]
    assert_saved(inactive)
    method.refresh_from_db()
    assert (method.name, method.is_active) == ("Renamed gateway", False)


def test_the_code_cannot_change_once_orders_use_the_method(
    admin_client_, method, url, make_order, offline_method
):
    make_order(method=method)
    unused = reverse("admin:payments_paymentmethod_change", args=[offline_method.pk])

    refused = post_change_form(admin_client_, url, code="testpay-2")
    renamed = post_change_form(admin_client_, unused, code="cheque")

    assert refused.status_code == 200
    [error] = form_errors(refused)
    assert error.startswith("code: Orders already use this method")
    assert "/payments/callbacks/testpay/" in error
    method.refresh_from_db()
    assert method.code == "testpay"
    assert_saved(renamed)
    offline_method.refresh_from_db()
    assert offline_method.code == "cheque"


@pytest.mark.parametrize(
    ("secure", "expected"),
    [
        (False, "http://shop.example.com/payments/callbacks/testpay/"),
        (True, "https://shop.example.com/payments/callbacks/testpay/"),
    ],
)
def test_the_callback_url_is_shown_with_the_host_of_the_request(
    admin_client_, url, settings, secure, expected, offline_method
):
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    offline_url = reverse("admin:payments_paymentmethod_change", args=[offline_method.pk])

    page = admin_client_.get(url, headers={"host": "shop.example.com"}, secure=secure)
    offline_page = admin_client_.get(offline_url, headers={"host": "shop.example.com"})

    assert page.status_code == 200
    assert f'<code id="callback-url">{expected}</code>' in page.text
    assert 'id="copy-callback-url"' in page.text
    assert offline_page.status_code == 200
    assert "callback-url" not in offline_page.text  # offline methods get no callbacks


def test_staff_who_may_only_view_a_method_see_its_callback_url(
    client, django_user_model, url, settings
):
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_paymentmethod"))
    client.force_login(viewer)

    page = client.get(url, headers={"host": "shop.example.com"})

    assert '<code id="callback-url">http://shop.example.com/payments/callbacks/testpay/</code>' in (
        page.text
    )
