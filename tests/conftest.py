import os

import pytest
from django.db import connection

from tests.factories import make_order, offline_method, online_method  # noqa: F401

REQUIRE_POSTGRES = os.environ.get("ORDERFLOW_REQUIRE_POSTGRES") == "1"


def pytest_collection_modifyitems(config, items):
    """Skip PostgreSQL-only tests on other databases, loudly; never in CI's PG run."""
    if connection.vendor == "postgresql":
        return
    if REQUIRE_POSTGRES:
        raise pytest.UsageError(
            "ORDERFLOW_REQUIRE_POSTGRES=1 but DATABASE_URL does not point at PostgreSQL."
        )
    skip = pytest.mark.skip(
        reason="needs PostgreSQL (row locks, real threads): set "
        "DATABASE_URL=postgres://postgres@127.0.0.1:5432/orderflow"
    )
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fast_test_settings(settings):
    # A deliberately weak hasher: test users are created by the hundred.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # pytest-django forces DEBUG=False; the manifest storage would then need
    # collectstatic before any admin page renders.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


FROZEN_SECOND = 1_764_000_000


@pytest.fixture(params=[0.0, 0.5, 0.999], ids=["at-0.0s", "at-0.5s", "at-0.999s"])
def frozen_clock(request, monkeypatch) -> int:
    """
    Freeze the clock the signature checks read; return its whole second.

    Parametrized over where the clock stands within that second, so a
    time-window test never depends on when it happens to run.
    """
    import payments.gateways.base

    monkeypatch.setattr(payments.gateways.base, "now", lambda: FROZEN_SECOND + request.param)
    return FROZEN_SECOND


@pytest.fixture
def staff_user(django_user_model):
    """A staff user without the override permission."""
    return django_user_model.objects.create_user(
        username="clerk", password="clerk-pass-123", is_staff=True
    )


@pytest.fixture
def supervisor(django_user_model):
    """A manager: may override payment statuses and confirm discouraged changes."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(
        username="supervisor", password="supervisor-pass-123", is_staff=True
    )
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["override_payment_status", "confirm_discouraged_transition"],
            content_type__app_label="orders",
        )
    )
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def overriding_clerk(django_user_model):
    """A clerk: may override payment statuses, but not confirm a discouraged change."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username="overriding-clerk", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="override_payment_status", content_type__app_label="orders")
    )
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def staff_groups(db):
    """
    The staff groups, as orders' staff groups migration creates them.

    Tests with ``transaction=True`` empty every table when they end, data
    migrations' rows included; running the migration's function again (it is
    idempotent) puts the groups back for the tests that need them.
    """
    import importlib

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("orders.migrations.0005_staff_groups")

    class SchemaEditor:
        pass

    editor = SchemaEditor()
    editor.connection = connection
    migration.create_staff_groups(apps, editor)
