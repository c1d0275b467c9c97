"""Read-only history in the admin: records are evidence, never edited."""

from django.core.exceptions import PermissionDenied
from simple_history.admin import SimpleHistoryAdmin

from orderflow.admin_lookups import NoSecretLookupsMixin


class ReadOnlyHistoryAdmin(NoSecretLookupsMixin, SimpleHistoryAdmin):
    """SimpleHistoryAdmin without revert: a history row can be read, not replayed."""

    history_list_display = ["channel"]

    def revert_disabled(self, request, obj=None):
        return True

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        # Reverting rebuilds the object from a history row and saves every
        # field, bypassing the state machine; hiding the button is not enough.
        if request.method != "GET":
            raise PermissionDenied("History records are read-only.")
        return super().history_form_view(request, object_id, version_id, extra_context)
