"""The staff groups the migration creates: who may do what."""

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.db import connection

pytestmark = pytest.mark.django_db

migration = importlib.import_module("orders.migrations.0005_staff_groups")

VIEWER = {
    "orders.view_order",
    "payments.view_paymenttransaction",
    "payments.view_gatewayevent",
    "payments.view_paymentmethod",
}
CLERK = VIEWER | {
    "orders.change_order",
    "orders.override_payment_status",
    "payments.record_offline_payment",
    "payments.acknowledge_gatewayevent",
}
MANAGER = CLERK | {
    "orders.confirm_discouraged_transition",
    "payments.capture_payment",
    "payments.refund_payment",
    "payments.replay_gatewayevent",
    "payments.change_paymentmethod",
}
EXPECTED = {"Order viewer": VIEWER, "Payments clerk": CLERK, "Payments manager": MANAGER}


def group_permissions() -> dict[str, set[str]]:
    return {
        group.name: {
            f"{p.content_type.app_label}.{p.codename}"
            for p in group.permissions.select_related("content_type")
        }
        for group in Group.objects.filter(name__in=EXPECTED)
    }


class FakeSchemaEditor:
    connection = connection


def test_the_groups_migration_creates_the_three_groups_with_their_permissions():
    Group.objects.filter(name__in=EXPECTED).delete()

    migration.create_staff_groups(apps, FakeSchemaEditor())

    assert group_permissions() == EXPECTED


@pytest.mark.usefixtures("staff_groups")
def test_no_group_may_add_or_delete_anything():
    granted = set().union(*group_permissions().values())

    assert not {p for p in granted if ".add_" in p or ".delete_" in p}
    assert "payments.change_paymenttransaction" not in granted
    assert "payments.change_gatewayevent" not in granted


@pytest.mark.usefixtures("staff_groups")
def test_the_groups_migration_runs_again_without_duplicates():
    migration.create_staff_groups(apps, FakeSchemaEditor())

    assert Group.objects.filter(name__in=EXPECTED).count() == 3
    assert group_permissions() == EXPECTED


def test_the_groups_migration_creates_missing_permissions_first():
    # On a fresh database the permissions do not exist yet while migrating.
    Permission.objects.filter(codename="override_payment_status").delete()

    migration.create_staff_groups(apps, FakeSchemaEditor())

    assert "orders.override_payment_status" in group_permissions()["Payments clerk"]


@pytest.mark.usefixtures("staff_groups")
def test_the_groups_migration_is_reversible_and_keeps_other_groups():
    Group.objects.create(name="Warehouse")

    migration.delete_staff_groups(apps, FakeSchemaEditor())
    assert not Group.objects.filter(name__in=EXPECTED).exists()
    assert Group.objects.filter(name="Warehouse").exists()

    migration.create_staff_groups(apps, FakeSchemaEditor())
    assert group_permissions() == EXPECTED
