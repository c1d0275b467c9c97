from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from orderflow.history_admin import ReadOnlyHistoryAdmin
from payments.models import GatewayEvent, PaymentMethod, PaymentTransaction


class PaymentMethodForm(forms.ModelForm):
    webhook_secret = forms.CharField(
        label=_("webhook secret"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Write a new secret to replace the stored one; leave empty to keep it."),
    )

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
        ]

    def clean_webhook_secret(self):
        new = self.cleaned_data.get("webhook_secret")
        # An empty field keeps the stored secret: it is never sent to the page.
        return new or (self.instance.webhook_secret if self.instance.pk else "")


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

    @admin.display(description=_("webhook secret"), boolean=True)
    def secret_is_set(self, obj: PaymentMethod) -> bool:
        return bool(obj.webhook_secret)

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
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
    list_display = [
        "received_at",
        "payment_method",
        "event_type",
        "event_id",
        "order",
        "outcome",
        "attempts",
    ]
    list_filter = ["outcome", "payment_method", "event_type"]
    search_fields = ["event_id", "order__number"]
    list_select_related = ["order", "payment_method"]
    date_hierarchy = "received_at"
