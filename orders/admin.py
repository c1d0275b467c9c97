from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpResponseRedirect
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from orderflow.history_admin import ReadOnlyHistoryAdmin
from orderflow.money import format_money
from orders.admin_actions import action_urls
from orders.admin_display import ADMIN_CSS, status_badge
from orders.admin_list import (
    ACKNOWLEDGE_PERMISSION,
    OrderChangeList,
    OrderListPaginator,
    PaymentKindFilter,
    acknowledge_gateway_events,
    attention_cell,
    money_cell,
)
from orders.admin_page import order_page_context
from orders.admin_status import ChangeStatusAdmin
from orders.exceptions import OrderError
from orders.models import Order, PaymentStatus
from orders.services import update_order_details


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = _("needs attention")
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("yes", _("Needs attention")), ("no", _("In order"))]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.needing_attention()
        if self.value() == "no":
            return queryset.not_needing_attention()
        return queryset


@admin.register(Order)
class OrderAdmin(ChangeStatusAdmin, ReadOnlyHistoryAdmin):
    # What staff scan for first (status, and why an order needs them) comes
    # before what they read once they found it, so it stays in view on a
    # laptop screen with the admin's sidebar open.
    list_display = [
        "number",
        "status_label",
        "attention",
        "order_total",
        "kept",
        "payment_method",
        "placed_at",
    ]
    list_filter = [
        "status",
        "payment_method",
        PaymentKindFilter,
        NeedsAttentionFilter,
        ("placed_at", admin.DateFieldListFilter),
    ]
    # Served by trigram indexes on PostgreSQL (orders/migrations/0007).
    search_fields = ["number", "customer_email", "gateway_reference"]
    search_help_text = _("Order number (or part of it), customer e-mail or gateway reference.")
    list_select_related = ["payment_method"]
    list_per_page = 50
    # No COUNT(*) of the whole table per page: the paginator estimates or
    # caps, and neither the "N total" nor facet counts are offered.
    paginator = OrderListPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    readonly_fields = [
        "number",
        "status",
        "order_total",
        "payment_method",
        "gateway_reference",
        "placed_at",
        "updated_at",
        "money_summary",
        "attention_summary",
    ]
    fieldsets = [
        (None, {"fields": ["number", "status", "attention_summary"]}),
        (
            _("Money"),
            {
                "fields": [
                    "order_total",
                    "money_summary",
                    "payment_method",
                    "gateway_reference",
                ]
            },
        ),
        (_("Customer"), {"fields": ["customer_email"]}),
        (_("Dates"), {"fields": ["placed_at", "updated_at"]}),
    ]
    history_list_display = ["status", "channel"]
    actions = ["change_payment_status", "acknowledge_gateway_events"]
    # Worked out from today's rows, so not shown on a past version's page.
    history_version_exclude = ["attention_summary"]

    class Media:
        css = {"all": [ADMIN_CSS]}

    def get_urls(self):
        # Before the admin's own: "<id>/capture/" must not read as an object id.
        return [*action_urls(self), *self.change_status_urls(), *super().get_urls()]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # The order page's own blocks (templates/admin/orders/order/change_form.html).
        if obj is not None:
            context.update(order_page_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def changelist_view(self, request, extra_context=None):
        # "Orders", not the admin's "Select order to change": staff come here
        # to find orders and work on them, not to pick one for a form.
        return super().changelist_view(request, {"title": _("Orders"), **(extra_context or {})})

    def get_changelist(self, request, **kwargs):
        return OrderChangeList

    def has_add_permission(self, request):
        # Orders come from the storefront (orders.services.place_order).
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except OrderError as exc:
            # Raised by the service inside the admin's transaction, which has
            # rolled back: nothing was saved. Show the page again, fresh.
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request, obj, form, change):
        # Only the edited fields are written, by the service, under the row
        # lock: a whole-row save would write back the running totals and the
        # status as read here, over what a callback committed meanwhile.
        request.order_details_unchanged = not form.has_changed()
        saved = update_order_details(
            obj, user=request.user, customer_email=form.cleaned_data["customer_email"]
        )
        if saved.status != obj.status:
            self.message_user(
                request,
                gettext(
                    "The payment status of order %(number)s changed to %(status)s while "
                    "you were editing it."
                )
                % {"number": saved.number, "status": PaymentStatus(saved.status).label},
                messages.WARNING,
            )

    def log_change(self, request, obj, message):
        # A save that changed nothing is not an event in the admin's log either.
        if not getattr(request, "order_details_unchanged", False):
            super().log_change(request, obj, message)

    def response_change(self, request, obj):
        if getattr(request, "order_details_unchanged", False):
            self.message_user(
                request,
                gettext("Nothing to save: the customer e-mail is unchanged."),
                messages.INFO,
            )
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    @admin.display(description=_("payment status"), ordering="status")
    def status_label(self, obj: Order):
        return status_badge(obj.status)

    @admin.display(description=_("total"), ordering="total")
    def order_total(self, obj: Order):
        return money_cell(obj.total, obj.currency)

    @admin.display(description=_("kept"))
    def kept(self, obj: Order):
        return money_cell(obj.kept_amount, obj.currency)

    @admin.display(description=_("attention"))
    def attention(self, obj: Order):
        return attention_cell(obj)

    @admin.action(
        description=_("Acknowledge gateway events"), permissions=["acknowledge_gateway_events"]
    )
    def acknowledge_gateway_events(self, request, queryset):
        return acknowledge_gateway_events(self, request, queryset)

    def has_acknowledge_gateway_events_permission(self, request) -> bool:
        return request.user.has_perm(ACKNOWLEDGE_PERMISSION)

    @admin.display(description=_("money"))
    def money_summary(self, obj: Order):
        if obj.disputed_amount:
            return format_html(
                "{} captured, {} refunded, {} withdrawn for a dispute, {} kept",
                format_money(obj.captured_amount, obj.currency),
                format_money(obj.refunded_amount, obj.currency),
                format_money(obj.disputed_amount, obj.currency),
                format_money(obj.kept_amount, obj.currency),
            )
        return format_html(
            "{} captured, {} refunded, {} kept",
            format_money(obj.captured_amount, obj.currency),
            format_money(obj.refunded_amount, obj.currency),
            format_money(obj.kept_amount, obj.currency),
        )

    @admin.display(description=_("needs attention"))
    def attention_summary(self, obj: Order):
        reasons = [*obj.attention_reasons, *obj.ledger_mismatch_reasons()]
        if not reasons:
            return _("No: status and ledger agree.")
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((r,) for r in reasons))
        )
