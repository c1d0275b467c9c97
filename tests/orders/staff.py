"""Staff users with exactly the permissions a test names."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

PERMISSIONS = {
    "view_order": ("orders", "view_order"),
    "change_order": ("orders", "change_order"),
    "override": ("orders", "override_payment_status"),
    "record": ("payments", "record_offline_payment"),
    "capture": ("payments", "capture_payment"),
    "refund": ("payments", "refund_payment"),
    "acknowledge": ("payments", "acknowledge_gatewayevent"),
    "replay": ("payments", "replay_gatewayevent"),
}


def staff_with(*names: str, username: str | None = None, password: str | None = None):
    """A staff user holding the named permissions (keys of PERMISSIONS), and no others."""
    user_model = get_user_model()
    user = user_model.objects.create_user(
        username=username or "staff-" + "-".join(names or ("none",)),
        password=password,
        is_staff=True,
    )
    for name in names:
        app_label, codename = PERMISSIONS[name]
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user_model.objects.get(pk=user.pk)  # a fresh permission cache
