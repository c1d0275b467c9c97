"""
Create the three staff groups: Order viewer, Payments clerk, Payments manager.

Permissions are normally created after ``migrate`` (a ``post_migrate``
signal), so they are created here first, for the apps the groups draw on.
Running it again adds what is missing and removes nothing an administrator
added to a group; reversing it deletes the three groups.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEWER = [
    ("orders", "view_order"),
    ("payments", "view_paymenttransaction"),
    ("payments", "view_gatewayevent"),
    ("payments", "view_paymentmethod"),
]
CLERK = [
    *VIEWER,
    ("orders", "change_order"),
    ("orders", "override_payment_status"),
    ("payments", "record_offline_payment"),
    ("payments", "acknowledge_gatewayevent"),
]
MANAGER = [
    *CLERK,
    ("orders", "confirm_discouraged_transition"),
    ("payments", "capture_payment"),
    ("payments", "refund_payment"),
    ("payments", "replay_gatewayevent"),
    ("payments", "change_paymentmethod"),
]
GROUPS = {
    "Order viewer": VIEWER,
    "Payments clerk": CLERK,
    "Payments manager": MANAGER,
}


def create_staff_groups(apps, schema_editor):
    db = schema_editor.connection.alias
    for label in ("orders", "payments"):
        app_config = apps.get_app_config(label)
        # create_permissions skips apps without a models module, which is
        # every app of the migration state.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        try:
            create_permissions(app_config, apps=apps, verbosity=0, using=db)
        finally:
            app_config.models_module = models_module

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in GROUPS.items():
        group, _ = Group.objects.using(db).get_or_create(name=name)
        permissions = []
        for app_label, codename in wanted:
            permissions.append(
                Permission.objects.using(db).get(
                    content_type__app_label=app_label, codename=codename
                )
            )
        group.permissions.add(*permissions)


def delete_staff_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("orders", "0004_disputes_and_refund_reversals"),
        ("payments", "0007_longer_fact_kind"),
    ]

    operations = [migrations.RunPython(create_staff_groups, delete_staff_groups)]
