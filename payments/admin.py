from collections import Counter

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils.text import capfirst, format_lazy
from django.utils.translation import gettext_lazy as _

from orderflow.admin_lookups import NoSecretLookupsMixin
from orderflow.history_admin import ReadOnlyHistoryAdmin
from payments.inbox import acknowledge_events, replay_gateway_event
from payments.models import (
    REPLAYABLE_OUTCOMES,
    EventOutcome,
    GatewayEvent,
    PaymentMethod,
    PaymentRequest,
    PaymentTransaction,
)


class WriteOnlyField(forms.CharField):
    """A secret's form field: never filled in on the page, empty keeps the stored value."""

    def has_changed(self, initial, data) -> bool:
        # The page never shows the stored value, so an empty field means "keep
        # it": only a new value written is a change (and goes to the admin log
        # by the field's name, never its value).
        value = self.to_python(data)
        return bool(value) and value != (initial or "")


def write_only_field(label: str) -> forms.CharField:
    """Return a write-only field for a secret."""
    return WriteOnlyField(
        label=capfirst(label),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Write a new value to replace the stored one; leave empty to keep it."),
    )


class PaymentMethodForm(forms.ModelForm):
    webhook_secret = write_only_field(_("webhook secret"))
    api_key = write_only_field(_("API key"))

    class Meta:
        model = PaymentMethod
        fields = [
            "code",
            "name",
            "kind",
            "gateway",
            "capture_mode",
            "supports_refunds",
            "supports_partial_refunds",
            "is_active",
            "webhook_secret",
            "api_key",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in ("webhook_secret", "api_key"):
            stored = bool(self.instance.pk and getattr(self.instance, name))
            state = _("A value is stored.") if stored else _("Nothing is stored yet.")
            self.fields[name].help_text = format_lazy("{} {}", state, self.fields[name].help_text)

    def _kept(self, name: str) -> str:
        # An empty field keeps the stored secret: it is never sent to the page.
        return self.cleaned_data.get(name) or (
            getattr(self.instance, name) if self.instance.pk else ""
        )

    def clean_webhook_secret(self) -> str:
        return self._kept("webhook_secret")

    def clean_api_key(self) -> str:
        return self._kept("api_key")


# What a user who may only view a payment method sees instead of each secret.
SECRET_STATES = {"webhook_secret": "secret_is_set", "api_key": "api_key_is_set"}


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyHistoryAdmin):
    form = PaymentMethodForm
    list_display = [
        "name",
        "code",
        "kind",
        "gateway",
        "capture_mode",
        "supports_refunds",
        "supports_partial_refunds",
        "is_active",
        "secret_is_set",
    ]
    list_filter = ["kind", "gateway", "is_active"]
    search_fields = ["code", "name"]

    readonly_fields = ["callback_url", "signature_failures", "last_signature_failure_at"]

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if self.has_change_permission(request, obj):
            return fields
        # Without change permission Django shows every field read-only, with
        # its stored value: a secret is replaced by whether one is stored.
        return [SECRET_STATES.get(name, name) for name in fields]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not self.has_change_permission(request, obj):
            fields += SECRET_STATES.values()
        return fields

    @admin.display(description=_("webhook secret"), boolean=True)
    def secret_is_set(self, obj: PaymentMethod) -> bool:
        return bool(obj.webhook_secret)

    @admin.display(description=_("API key"), boolean=True)
    def api_key_is_set(self, obj: PaymentMethod) -> bool:
        return bool(obj.api_key)

    @admin.display(description=_("callback URL"))
    def callback_url(self, obj: PaymentMethod) -> str:
        if not obj.pk or not obj.is_online:
            return "-"
        return reverse("payments:callback", args=[obj.code])

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
        elif form.changed_data:
            # Only what the form changed: callbacks count rejected signatures
            # on this row meanwhile, and a page saved unchanged writes no history.
            obj.save(update_fields=form.changed_data)


class ReadOnlyAdmin(NoSecretLookupsMixin, admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PaymentTransaction)
class PaymentTransactionAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "order",
        "kind",
        "amount",
        "currency",
        "reference",
        "payment_method",
        "channel",
        "created_by",
    ]
    list_filter = ["kind", "payment_method", "channel"]
    search_fields = ["order__number", "reference"]
    list_select_related = ["order", "payment_method", "created_by"]
    date_hierarchy = "created_at"


@admin.register(GatewayEvent)
class GatewayEventAdmin(ReadOnlyAdmin):
    # What staff look for first: which order, what happened, what came of it.
    list_display = [
        "received_at",
        "order",
        "event_type",
        "outcome",
        "attention",
        "attempts",
        "payment_method",
        "event_id",
    ]
    list_filter = ["outcome", "deferred", "payment_method", "event_type"]
    search_fields = ["event_id", "order__number", "reference"]
    list_select_related = ["order", "payment_method"]
    date_hierarchy = "received_at"
    actions = ["replay", "acknowledge"]

    @admin.display(description=_("needs attention"), boolean=True)
    def attention(self, obj: GatewayEvent) -> bool:
        return obj.outcome == EventOutcome.IGNORED and obj.acknowledged_at is None

    def has_replay_permission(self, request) -> bool:
        return request.user.has_perm("payments.replay_gatewayevent")

    def has_acknowledge_permission(self, request) -> bool:
        return request.user.has_perm("payments.acknowledge_gatewayevent")

    @admin.action(
        description=_("Replay selected failed or unmatched events"), permissions=["replay"]
    )
    def replay(self, request, queryset):
        if not self.has_replay_permission(request):
            raise PermissionDenied
        done: Counter[str] = Counter()
        for event in queryset.filter(outcome__in=REPLAYABLE_OUTCOMES).order_by("received_at"):
            replay_gateway_event(event)
            event.refresh_from_db()
            done[event.outcome] += 1
        skipped = queryset.exclude(outcome__in=REPLAYABLE_OUTCOMES).count()
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(done.items()))
        self.message_user(
            request,
            _("Replayed %(n)s event(s): %(summary)s. %(skipped)s skipped (not replayable).")
            % {"n": sum(done.values()), "summary": summary or "-", "skipped": skipped},
            messages.WARNING if done[EventOutcome.FAILED] else messages.SUCCESS,
        )

    @admin.action(
        description=_(
            "Acknowledge selected ignored events (the order no longer needs attention for them)"
        ),
        permissions=["acknowledge"],
    )
    def acknowledge(self, request, queryset):
        if not self.has_acknowledge_permission(request):
            raise PermissionDenied
        count = acknowledge_events(queryset, user=request.user)
        self.message_user(request, _("Acknowledged %(n)s event(s).") % {"n": count})


@admin.register(PaymentRequest)
class PaymentRequestAdmin(ReadOnlyAdmin):
    """What staff asked the gateways, including requests still in flight."""

    list_display = [
        "created_at",
        "order",
        "action",
        "amount",
        "currency",
        "status",
        "requested_by",
        "answered_at",
        "completed_at",
        "detail",
    ]
    list_filter = ["status", "action", "payment_method"]
    search_fields = ["order__number", "=token"]
    list_select_related = ["order", "requested_by"]
    date_hierarchy = "created_at"
