"""The payment method admin: write-only secrets, and a log that says what really changed."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.db.models import F
from django.urls import reverse

from payments.admin import PaymentMethodAdmin
from payments.models import PaymentMethod
from tests.admin_forms import assert_saved, browser_post_data, post_change_form

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
