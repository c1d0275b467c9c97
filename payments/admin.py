from collections import Counter

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.templatetags.static import static
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.text import capfirst, format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from orderflow.admin_lookups import NoSecretLookupsMixin
from orderflow.audit import audit_context
from orderflow.history_admin import ReadOnlyHistoryAdmin
from payments.exceptions import PaymentError
from payments.gateways.registry import gateway_paths
from payments.inbox import acknowledge_events, replay_gateway_event
from payments.models import (
    REPLAYABLE_OUTCOMES,
    EventOutcome,
    GatewayEvent,
    PaymentMethod,
    PaymentMethodKind,
    PaymentRequest,
    PaymentTransaction,
)
from payments.raw_bodies import pretty_body


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
        registered = sorted(gateway_paths())
        self.fields["gateway"] = forms.ChoiceField(
            label=capfirst(_("gateway")),
            choices=[("", _("None (offline method)")), *((key, key) for key in registered)],
            required=False,
            error_messages={
                "invalid_choice": format_lazy(
                    _("“%(value)s” is not a registered gateway. Choose one of: {}."),
                    ", ".join(registered),
                )
            },
            help_text=_("The adapter that signs and sends this method's callbacks."),
        )
        if "code" in self.fields:
            self.fields["code"].help_text = _(
                "Part of the callback URL given to the gateway, so it cannot change "
                "once orders use the method."
            )
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

    def clean_code(self) -> str:
        code = self.cleaned_data["code"]
        changed = self.instance.pk and code != self.instance.code
        if changed and self.instance.orders.exists():
            raise forms.ValidationError(
                _(
                    "Orders already use this method: changing its code would change the "
                    "callback URL its gateway calls (%(url)s), and callbacks for those "
                    "orders would be refused. Create a new method instead."
                ),
                code="code_in_use",
                params={"url": reverse("payments:callback", args=[self.instance.code])},
            )
        return code

    def clean(self) -> dict:
        cleaned = super().clean()
        kind, gateway = cleaned.get("kind"), cleaned.get("gateway")
        if kind == PaymentMethodKind.ONLINE and "gateway" in cleaned and not gateway:
            self.add_error("gateway", _("An online method needs a gateway."))
        if kind == PaymentMethodKind.OFFLINE and gateway:
            self.add_error(
                "gateway", _("An offline method has no gateway: choose “None (offline method)”.")
            )
        if (
            kind == PaymentMethodKind.ONLINE
            and cleaned.get("is_active")
            and "webhook_secret" in cleaned
            and not cleaned["webhook_secret"]
        ):
            self.add_error(
                "webhook_secret",
                _(
                    "An active online method needs a webhook secret: without one every "
                    "callback from its gateway is refused."
                ),
            )
        return cleaned


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

    readonly_fields = ["signature_failures", "last_signature_failure_at"]
    history_list_display = ["name", "kind", "is_active", "channel"]

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

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # The stored method, not what a refused form just posted.
        stored = obj and PaymentMethod.objects.filter(pk=obj.pk).first()
        if stored is not None and stored.is_online:
            # The host the admin was reached on is the one the gateway can reach.
            callback = reverse("payments:callback", args=[stored.code])
            context["callback_url"] = request.build_absolute_uri(callback)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
        elif form.changed_data:
            # Only what the form changed: callbacks count rejected signatures
            # on this row meanwhile, and a page saved unchanged writes no history.
            # The history keeps no secret, so its record says which was replaced.
            replaced = [
                str(form.fields[name].label) for name in SECRET_STATES if name in form.changed_data
            ]
            reason = (
                gettext("Replaced: %(secrets)s.") % {"secrets": ", ".join(replaced)}
                if replaced
                else None
            )
            with audit_context(reason=reason):
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
        "order_link",
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

    def get_queryset(self, request):
        flagged = GatewayEvent.objects.needing_attention().filter(pk=OuterRef("pk"))
        return super().get_queryset(request).annotate(needs_attention=Exists(flagged))

    def get_fields(self, request, obj=None):
        # The stored body, pretty-printed, in place of the raw text.
        return ["body" if name == "raw_body" else name for name in super().get_fields(request, obj)]

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "body"]

    @admin.display(description=_("needs attention"), ordering="-needs_attention")
    def attention(self, obj: GatewayEvent) -> str:
        if not obj.needs_attention:
            return ""
        label = gettext("Needs attention")
        return format_html(
            '<img src="{}" alt="{}" title="{}">', static("admin/img/icon-alert.svg"), label, label
        )

    @admin.display(description=_("order"), ordering="order__number")
    def order_link(self, obj: GatewayEvent) -> str:
        if obj.order is None:
            return "-"
        url = reverse("admin:orders_order_change", args=[obj.order.pk])
        return format_html('<a href="{}">{}</a>', url, obj.order.number)

    @admin.display(description=_("raw body"))
    def body(self, obj: GatewayEvent) -> str:
        return format_html('<pre class="gateway-event-body">{}</pre>', pretty_body(obj.raw_body))

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/replay/",
                wrap(self.replay_view),
                name="{}_{}_replay".format(*info),
            ),
            path(
                "<path:object_id>/acknowledge/",
                wrap(self.acknowledge_view),
                name="{}_{}_acknowledge".format(*info),
            ),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["can_replay"] = self._may_replay(request, obj)
            context["can_acknowledge"] = self._may_acknowledge(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _may_replay(self, request, event: GatewayEvent) -> bool:
        return self.has_replay_permission(request) and event.outcome in REPLAYABLE_OUTCOMES

    def _may_acknowledge(self, request, event: GatewayEvent) -> bool:
        return (
            self.has_acknowledge_permission(request)
            and GatewayEvent.objects.filter(pk=event.pk).acknowledgeable().exists()
        )

    def _event_for(self, request, object_id: str) -> GatewayEvent:
        event = get_object_or_404(self.get_queryset(request), pk=admin.utils.unquote(object_id))
        if not self.has_view_permission(request, event):
            raise PermissionDenied
        return event

    def _back_to(self, event: GatewayEvent) -> HttpResponseRedirect:
        info = self.opts.app_label, self.opts.model_name
        return HttpResponseRedirect(reverse("admin:{}_{}_change".format(*info), args=[event.pk]))

    @method_decorator(require_POST)
    def replay_view(self, request, object_id):
        """Replay one event from its page."""
        if not self.has_replay_permission(request):
            raise PermissionDenied
        event = self._event_for(request, object_id)
        try:
            replay_gateway_event(event)
        except PaymentError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return self._back_to(event)
        event.refresh_from_db()
        still_unfinished = event.outcome in REPLAYABLE_OUTCOMES
        self.message_user(
            request,
            _("Replayed event %(id)s: %(outcome)s. %(detail)s")
            % {
                "id": event.event_id,
                "outcome": event.get_outcome_display(),
                "detail": event.detail,
            },
            messages.WARNING if still_unfinished else messages.SUCCESS,
        )
        return self._back_to(event)

    @method_decorator(require_POST)
    def acknowledge_view(self, request, object_id):
        """Acknowledge one event from its page."""
        if not self.has_acknowledge_permission(request):
            raise PermissionDenied
        event = self._event_for(request, object_id)
        if acknowledge_events(GatewayEvent.objects.filter(pk=event.pk), user=request.user):
            self.message_user(
                request,
                _("Acknowledged event %(id)s: its order no longer needs attention for it.")
                % {"id": event.event_id},
            )
        else:
            self.message_user(
                request,
                _("Event %(id)s does not need acknowledging; nothing changed.")
                % {"id": event.event_id},
                messages.WARNING,
            )
        return self._back_to(event)

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
