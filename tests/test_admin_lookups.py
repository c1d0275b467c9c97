"""No admin URL filter reaches a secret, by any path, for any user."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import reverse

from orderflow.admin_lookups import NoSecretLookupsMixin, lookup_touches_secret
from orders.admin import OrderAdmin
from orders.models import Order
from orders.models import PaymentStatus as S
from payments.models import PaymentMethod
from tests.factories import PaymentMethodFactory

CHANGELISTS = {
    "method": "admin:payments_paymentmethod_changelist",
    "order": "admin:orders_order_changelist",
    "ledger": "admin:payments_paymenttransaction_changelist",
    "event": "admin:payments_gatewayevent_changelist",
    "request": "admin:payments_paymentrequest_changelist",
}

# (changelist, query string): each asks a yes/no question about a secret.
CRAFTED = [
    ("method", "webhook_secret__regex=^w"),
    ("method", "webhook_secret__startswith=whsec_"),
    ("method", "webhook_secret=whsec_test_only_secret"),
    ("method", "webhook_secret__isnull=False"),
    ("method", "api_key__startswith=sk_"),
    ("method", "api_key__regex=."),
    ("method", "orders__payment_method__webhook_secret__startswith=w"),
    ("method", "transactions__created_by__password__startswith=md5"),
    ("method", "events__acknowledged_by__password__regex=^m"),
    ("order", "payment_method__webhook_secret__startswith=w"),
    ("order", "payment_method__webhook_secret=whsec_test_only_secret"),
    ("order", "payment_method__api_key__regex=^sk_"),
    ("order", "transactions__created_by__password__startswith=md5"),
    ("order", "gateway_events__acknowledged_by__password__contains=$"),
    ("order", "gateway_events__payment_method__webhook_secret__contains=w"),
    ("ledger", "payment_method__webhook_secret__startswith=w"),
    ("ledger", "order__payment_method__api_key__startswith=sk_"),
    ("ledger", "created_by__password__startswith=md5"),
    ("ledger", "created_by__password=x"),
    ("event", "payment_method__webhook_secret__regex=^w"),
    ("event", "order__payment_method__webhook_secret__startswith=w"),
    ("event", "acknowledged_by__password__startswith=md5"),
    ("event", "acknowledged_by__password=x"),
    ("request", "payment_method__api_key__startswith=sk_"),
    ("request", "order__payment_method__webhook_secret__regex=^w"),
    ("request", "requested_by__password__startswith=md5"),
    ("request", "transaction__created_by__password=x"),
]


@pytest.fixture
def viewer(django_user_model):
    """Staff allowed to view orders, payment methods, the ledger and events, nothing more."""
    user = django_user_model.objects.create_user(username="viewer", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=[
                "view_order",
                "view_paymentmethod",
                "view_paymenttransaction",
                "view_gatewayevent",
                "view_paymentrequest",
            ]
        )
    )
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def data(make_order):
    order = make_order(S.PAID)
    PaymentMethodFactory(code="stripe", gateway="stripe", api_key="sk_test_only_key")
    return order


@pytest.fixture(params=["viewer", "superuser"])
def as_user(request, client, viewer, admin_user):
    client.force_login(viewer if request.param == "viewer" else admin_user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(("admin_name", "query"), CRAFTED)
def test_secret_lookups_are_refused_with_a_400(as_user, data, admin_name, query):
    response = as_user.get(f"{reverse(CHANGELISTS[admin_name])}?{query}")

    assert response.status_code == 400


@pytest.mark.django_db
def test_legitimate_filters_still_work(as_user, data):
    method = data.payment_method
    legit = [
        ("method", "kind__exact=online", 2),
        ("method", "gateway=hmac&is_active__exact=1", 1),
        ("method", "q=stripe", 1),
        ("order", "status__exact=paid", 1),
        ("order", f"payment_method__id__exact={method.pk}", 1),
        ("order", "attention=no", 1),
        ("order", f"placed_at__year={data.placed_at.year}", 1),
        ("ledger", "kind__exact=capture", 1),
        ("ledger", f"payment_method__id__exact={method.pk}&channel__exact=gateway", 1),
        ("event", "outcome__exact=ignored", 0),
        ("event", f"payment_method__id__exact={method.pk}", 0),
    ]
    for admin_name, query, count in legit:
        response = as_user.get(f"{reverse(CHANGELISTS[admin_name])}?{query}")

        assert response.status_code == 200, query
        assert response.context["cl"].result_count == count, query


def test_every_admin_of_the_project_refuses_secret_lookups():
    ours = [
        model_admin
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in {"orders", "payments"}
    ]

    assert {model_admin.model._meta.model_name for model_admin in ours} >= {
        "order",
        "paymentmethod",
        "paymenttransaction",
        "gatewayevent",
        "paymentrequest",
    }
    assert all(isinstance(model_admin, NoSecretLookupsMixin) for model_admin in ours)


@pytest.mark.parametrize(
    ("model", "lookup", "secret"),
    [
        (PaymentMethod, "webhook_secret", True),
        (PaymentMethod, "api_key__in", True),
        (Order, "payment_method__webhook_secret__iregex", True),
        (Order, "transactions__created_by__password", True),
        (Order, "payment_method__code__startswith", False),
        (Order, "payment_method", False),
        (Order, "customer_email__icontains", False),
        (Order, "not_a_field__webhook_secret", False),
    ],
)
def test_lookup_paths_are_resolved_through_relations(model, lookup, secret):
    assert lookup_touches_secret(model, lookup) is secret


def test_a_list_filter_naming_a_secret_does_not_open_it(rf):
    class CarelessOrderAdmin(OrderAdmin):
        list_filter = ["payment_method__webhook_secret"]

    model_admin = CarelessOrderAdmin(Order, admin.site)
    request = rf.get("/")
    lookup = "payment_method__webhook_secret"

    # Django alone allows a relation lookup that a list filter names.
    assert admin.ModelAdmin.lookup_allowed(model_admin, lookup, "w", request)
    assert not model_admin.lookup_allowed(lookup, "w", request)
    assert not model_admin.lookup_allowed(f"{lookup}__startswith", "w", request)


# The lists with a date hierarchy (the order list has a placed-date filter).
DATE_FIELDS = {
    "ledger": "created_at",
    "event": "received_at",
    "request": "created_at",
}


@pytest.mark.django_db
@pytest.mark.parametrize("admin_name", sorted(DATE_FIELDS))
@pytest.mark.parametrize(
    "dates",
    [
        "{f}__year=9999",
        "{f}__year=9999&{f}__month=12",
        "{f}__year=9999&{f}__month=12&{f}__day=31",
        "{f}__year=0",
        "{f}__year=2026&{f}__month=13",
        "{f}__year=2026&{f}__month=2&{f}__day=30",
        "{f}__year=99999999999999999999",
        "{f}__year=-1",
    ],
)
def test_impossible_dates_in_the_date_hierarchy_are_bad_filters_not_errors(
    as_user, data, admin_name, dates
):
    query = dates.format(f=DATE_FIELDS[admin_name])

    response = as_user.get(f"{reverse(CHANGELISTS[admin_name])}?{query}")

    # Django's answer to a bad filter: back to the list, flagged with ?e=1.
    assert response.status_code == 302, (query, response.status_code)
    assert response["Location"].endswith("?e=1")
