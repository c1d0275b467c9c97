"""Read-only history in the admin: records are evidence, never edited."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.utils import (
    display_for_field,
    display_for_value,
    flatten_fieldsets,
    label_for_field,
    unquote,
)
from django.contrib.auth import get_permission_codename, get_user_model
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.db import models
from django.http import Http404
from django.utils.text import capfirst
from simple_history.admin import SimpleHistoryAdmin
from simple_history.template_utils import HistoricalRecordContextHelper

from orderflow.admin_lookups import NoSecretLookupsMixin

EMPTY = "-"
# Set on the request while a past version's page is built.
_VERSION_PAGE = "_orderflow_history_version"


class LabelledChangesHelper(HistoricalRecordContextHelper):
    """The "Changes" column in words: choice labels, localized dates, "-" for nothing."""

    def prepare_delta_change_value(self, change, value):
        field = self.model._meta.get_field(change.field)
        if isinstance(field, models.ManyToManyField):
            return super().prepare_delta_change_value(change, value)
        if value is None or value == "":
            return EMPTY
        if isinstance(field, models.ForeignKey):
            return str(value)
        return display_for_field(value, field, EMPTY)


class ReadOnlyHistoryAdmin(NoSecretLookupsMixin, SimpleHistoryAdmin):
    """
    SimpleHistoryAdmin without revert: a history row can be read, not replayed.

    The history list shows labels, not stored values, and "-" for nothing. A
    past version's page shows that version's values, every field read-only,
    without the present-day extras named in ``history_version_exclude`` (what
    is computed from today's rows, such as the attention reasons).
    """

    history_list_display = ["channel"]
    object_history_list_template = "admin/history/object_history_list.html"
    object_history_form_template = "admin/history/object_history_form.html"
    history_version_exclude: list[str] = []

    def revert_disabled(self, request, obj=None):
        return True

    # -- the history list --------------------------------------------------

    def history_view(self, request, object_id, extra_context=None):
        history_model = self.model.history.model
        columns = [
            capfirst(label_for_field(name, history_model, model_admin=self))
            for name in self.get_history_list_display(request)
        ]
        context = {
            "history_columns": columns,
            # "Changed by" links to the user's page only for those who may open it.
            "may_view_users": self._may_view_users(request),
            **(extra_context or {}),
        }
        return super().history_view(request, object_id, context)

    def _may_view_users(self, request) -> bool:
        user_opts = get_user_model()._meta
        return any(
            request.user.has_perm(f"{user_opts.app_label}.{get_permission_codename(a, user_opts)}")
            for a in ("view", "change")
        )

    def get_historical_record_context_helper(self, request, historical_record):
        return LabelledChangesHelper(self.model, historical_record)

    def set_history_delta_changes(self, request, historical_records, **kwargs):
        super().set_history_delta_changes(request, historical_records, **kwargs)
        # The page's records: each gets its column values as staff read them.
        names = self.get_history_list_display(request)
        for record in historical_records:
            record.history_cells = [self.history_cell(record, name) for name in names]

    def history_cell(self, record, name: str) -> Any:
        """Return one history list value in words (a label, "-" for nothing)."""
        if callable(getattr(self, name, None)):
            # SimpleHistoryAdmin has set the admin method's result on the record.
            return display_for_value(getattr(record, name), EMPTY)
        try:
            field = record._meta.get_field(name)
        except FieldDoesNotExist:
            return display_for_value(getattr(record, name, None), EMPTY)
        value = getattr(record, field.attname)
        if value is None or value == "":
            return EMPTY
        if field.is_relation:
            return str(getattr(record, name))
        return display_for_field(value, field, EMPTY)

    # -- a past version ----------------------------------------------------

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        # Reverting rebuilds the object from a history row and saves every
        # field, bypassing the state machine; hiding the button is not enough.
        if request.method != "GET":
            raise PermissionDenied("History records are read-only.")
        record = self._version_record(object_id, version_id)
        setattr(request, _VERSION_PAGE, True)
        context = {"version_date": record.history_date, **(extra_context or {})}
        return super().history_form_view(request, object_id, version_id, context)

    def _version_record(self, object_id, version_id):
        # Ids from the URL: anything that is not one is "no such version", not a 500.
        history = self.model.history
        pk_name = self.model._meta.pk.attname
        try:
            lookup = {pk_name: unquote(object_id), "history_id": int(version_id)}
            return history.get(**lookup)
        except (ValueError, TypeError, ValidationError, history.model.DoesNotExist) as exc:
            raise Http404("No such version.") from exc

    def is_version_page(self, request) -> bool:
        return getattr(request, _VERSION_PAGE, False)

    def history_version_fields(self) -> set[str]:
        """Return the fields a past version can show: those its history keeps."""
        history_model = self.model.history.model
        tracked = {f.name for f in history_model._meta.get_fields()}
        model_fields = {f.name for f in self.model._meta.get_fields()}
        excluded = set(self.history_version_exclude)
        names = set(tracked)
        # Admin display methods (money in words) read the version's own values.
        names.update(
            name
            for name in self.readonly_fields
            if name not in model_fields and name not in excluded
        )
        return names - excluded

    def get_fieldsets(self, request, obj=None):
        if not self.is_version_page(request):
            return super().get_fieldsets(request, obj)
        shown = self.history_version_fields()
        if not self.fieldsets:
            tracked = [f.name for f in self.model._meta.concrete_fields if f.name in shown]
            return [(None, {"fields": [n for n in tracked if n != self.model._meta.pk.name]})]
        fieldsets = []
        for title, options in self.fieldsets:
            fields = [name for name in options["fields"] if name in shown]
            if fields:
                fieldsets.append((title, {**options, "fields": fields}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        if self.is_version_page(request):
            return flatten_fieldsets(self.get_fieldsets(request, obj))
        return super().get_readonly_fields(request, obj)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if self.is_version_page(request):
            # Nothing to edit: no field, no secret, none of the form's checks.
            kwargs = {**kwargs, "form": forms.ModelForm, "fields": []}
        return super().get_form(request, obj, change, **kwargs)

    def get_inline_instances(self, request, obj=None):
        if self.is_version_page(request):
            return []
        return super().get_inline_instances(request, obj)
