"""
The order list's pieces: its paginator, filters, row cells and list action.

The list must stay fast on a table of millions of orders: every cell reads
the order's own columns (the stored attention code included, never the
rules), the filters read indexed columns, and the paginator never counts the
whole table (see ``OrderListPaginator``).
"""

from __future__ import annotations

from functools import cached_property

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from orderflow.admin_lookups import BoundedChangeList
from orderflow.money import format_money
from orders.models import RULES_BY_CODE, Order, PaymentStatus

ACKNOWLEDGE_PERMISSION = "payments.acknowledge_gatewayevent"


class OrderListPaginator(Paginator):
    """
    A paginator that never runs ``COUNT(*)`` over a huge table.

    Unfiltered on PostgreSQL, a table larger than ``ESTIMATE_ABOVE`` rows is
    counted from the planner's estimate (``pg_class.reltuples``, kept by
    ANALYZE and autovacuum): ``is_estimate``. Otherwise the rows are counted
    up to ``COUNT_CAP`` and no further: below the cap the count is exact;
    above it the list offers ``COUNT_CAP`` rows' worth of pages and says
    "more than": ``is_capped``.
    """

    ESTIMATE_ABOVE = 50_000
    COUNT_CAP = 10_000

    is_estimate = False
    is_capped = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet):
            if not queryset.query.has_filters():
                estimate = self._estimate(queryset)
                if estimate is not None and estimate > self.ESTIMATE_ABOVE:
                    self.is_estimate = True
                    return estimate
            counted = queryset.order_by()[: self.COUNT_CAP + 1].count()
            if counted > self.COUNT_CAP:
                self.is_capped = True
                return self.COUNT_CAP
            return counted
        return super().count

    @staticmethod
    def _estimate(queryset: QuerySet) -> int | None:
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                [queryset.model._meta.db_table],
            )
            row = cursor.fetchone()
        # -1: never analyzed; count for real then.
        return int(row[0]) if row and row[0] >= 0 else None


class OrderChangeList(BoundedChangeList):
    """
    The order changelist: a lookup whose SQL cannot be built is a bad filter.

    Date parts in the query string (``?placed_at__year=0``) fail only when
    the SQL is compiled, after Django's own checks; compiling once here
    turns that into the admin's "bad filter" answer instead of a 500.
    """

    def get_queryset(self, request, exclude_parameters=None):
        from django.contrib.admin.options import IncorrectLookupParameters

        queryset = super().get_queryset(request, exclude_parameters)
        try:
            queryset.query.get_compiler(queryset.db).as_sql()
        except (ValueError, OverflowError) as exc:
            raise IncorrectLookupParameters(exc) from exc
        return queryset


class PaymentKindFilter(admin.SimpleListFilter):
    """Offline (cheque, wire) or online (a gateway) payment methods."""

    title = _("payment type")
    parameter_name = "method_kind"

    def lookups(self, request, model_admin):
        from payments.models import PaymentMethodKind

        return PaymentMethodKind.choices

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        from payments.models import PaymentMethodKind

        if self.value() in PaymentMethodKind.values:
            return queryset.filter(payment_method__kind=self.value())
        return queryset


def money_cell(amount, currency: str) -> SafeString:
    """An amount with its currency, kept on one line."""
    return format_html('<span class="order-money">{}</span>', format_money(amount, currency))


def attention_cell(order: Order) -> SafeString | str:
    """
    The stored attention as a few words, with the rule's explanation as a tooltip.

    Read from ``attention_code`` and the row's own columns: no query per row.
    """
    rule = RULES_BY_CODE.get(order.attention_code)
    if rule is None:
        if not order.attention_code:
            return ""
        label = gettext("Needs attention")  # a code no longer among the rules
        explanation = order.attention_code
    else:
        label = str(rule.label)
        explanation = gettext(rule.message) % {
            "net": format_money(order.net_paid_amount, order.currency),
            "total": format_money(order.total, order.currency),
            "status": PaymentStatus(order.status).label,
            "disputed": format_money(order.disputed_amount, order.currency),
        }
    return format_html(
        '<span class="order-attention-reason" title="{}">&#9888; {}</span>', explanation, label
    )


def acknowledge_gateway_events(modeladmin, request, queryset: QuerySet) -> None:
    """Acknowledge the acknowledgeable gateway events of the selected orders."""
    from payments.inbox import acknowledge_events
    from payments.models import GatewayEvent

    if not request.user.has_perm(ACKNOWLEDGE_PERMISSION):
        # Django hides the action without the permission; a crafted POST ends here.
        raise PermissionDenied
    order_ids = list(queryset.order_by().values_list("pk", flat=True))
    count = acknowledge_events(
        GatewayEvent.objects.filter(order_id__in=order_ids), user=request.user
    )
    if count:
        modeladmin.message_user(
            request,
            ngettext(
                "%(count)d gateway event acknowledged on the %(orders)d selected order(s).",
                "%(count)d gateway events acknowledged on the %(orders)d selected order(s).",
                count,
            )
            % {"count": count, "orders": len(order_ids)},
            messages.SUCCESS,
        )
    else:
        modeladmin.message_user(
            request,
            gettext("The selected orders have no gateway events to acknowledge."),
            messages.INFO,
        )
