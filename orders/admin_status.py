"""
"Change payment status" in the admin: one order or many, with a confirmation step.

Three steps on one URL per entry point (an order's ``<pk>/change-status/``,
or ``change-status/`` for a selection from the list): the form (target
status and reason), the confirmation page (every order, its status now, the
target, each discouraged change's warning), and the summary of what
:func:`orders.services.override_statuses` did. The confirmation page signs
what it showed (the orders, the status of each as seen, the target, the
reason, the user); the last step acts on that signed plan only, so a crafted
POST cannot skip the confirmation or change what was confirmed, and an order
whose status moved meanwhile is reported, not changed. Every step checks the
permissions on the server; the service checks them again for each order.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db.models import BLANK_CHOICE_DASH
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from orders.admin_display import ADMIN_CSS, status_badge
from orders.exceptions import InvalidOrder
from orders.models import CONFIRM_DISCOURAGED_PERMISSION, OVERRIDE_PERMISSION, Order, PaymentStatus
from orders.policy import discouraged_reason
from orders.services import (
    OverrideResult,
    OverrideSummary,
    order_pk_in_range,
    override_statuses,
)

# More than this at once is a job for the set_payment_status command.
MAX_ORDERS = 500
# The confirmation page is valid for an hour; after that, start again.
PLAN_MAX_AGE = 60 * 60
PLAN_SALT = "orders.admin_status.plan"
# Longest id accepted in a posted selection (a bigint has 19 digits).
_MAX_ID_DIGITS = 19

TEMPLATES = "admin/orders/order/change_status_{}.html"


class ChangeStatusForm(forms.Form):
    required_css_class = "required"

    new_status = forms.ChoiceField(
        label=_("New payment status"),
        choices=[*BLANK_CHOICE_DASH, *PaymentStatus.choices],
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Why the status is changed by hand; kept in each order's history."),
    )


class SelectionError(Exception):
    """The posted selection of orders cannot be used; the message says why."""


@dataclass(frozen=True)
class PlannedChange:
    """One line of the confirmation page."""

    pk: int
    order: Order | None
    new_status: str

    @property
    def status(self) -> str:
        return self.order.status if self.order else ""

    @property
    def already(self) -> bool:
        return self.order is not None and self.order.status == self.new_status

    @property
    def warning(self) -> str | None:
        if self.order is None or self.already:
            return None
        return discouraged_reason(self.order.status, self.new_status)

    @property
    def badge(self):
        return status_badge(self.status) if self.order else ""


def parse_ids(values: list[str]) -> list[int]:
    """Return the posted order ids as sorted, distinct integers; raise SelectionError."""
    if not values:
        raise SelectionError(gettext("No orders were selected."))
    pks = set()
    for value in values:
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= _MAX_ID_DIGITS):
            raise SelectionError(
                gettext("“%(value)s” is not an order id; select the orders again.")
                % {"value": value[:40]}
            )
        pks.add(int(text))
    if len(pks) > MAX_ORDERS:
        raise SelectionError(too_many_message(len(pks)))
    return sorted(pks)


def _in_range(pks: list[int]) -> list[int]:
    return [pk for pk in pks if order_pk_in_range(pk)]


def too_many_message(count: int) -> str:
    return gettext(
        "%(count)s orders are selected; change at most %(max)s at once here, "
        "or use the set_payment_status command."
    ) % {"count": count, "max": MAX_ORDERS}


class ChangeStatusAdmin:
    """OrderAdmin's part: the views, the list action and their permissions."""

    def has_override_payment_status_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(OVERRIDE_PERMISSION)

    def change_status_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path(
                "change-status/",
                wrap(self.change_status_many_view),
                name="{}_{}_change_status_many".format(*info),
            ),
            path(
                "<int:pk>/change-status/",
                wrap(self.change_status_view),
                name="{}_{}_change_status".format(*info),
            ),
        ]

    @admin.action(
        description=_("Change payment status of selected orders"),
        permissions=["override_payment_status"],
    )
    def change_payment_status(self, request, queryset):
        self._check_change_status_permission(request)
        pks = list(queryset.order_by("pk").values_list("pk", flat=True)[: MAX_ORDERS + 1])
        if len(pks) > MAX_ORDERS:
            self.message_user(request, too_many_message(queryset.count()), messages.ERROR)
            return None
        return self._status_form(request, pks, ChangeStatusForm(), single=False)

    # -- views ---------------------------------------------------------------

    @method_decorator(require_http_methods(["GET", "POST"]))
    def change_status_view(self, request, pk: int):
        """Change the payment status of one order."""
        return self._change_status(request, [pk], single=True)

    @method_decorator(require_http_methods(["GET", "POST"]))
    def change_status_many_view(self, request):
        """Change the payment status of the orders selected in the list."""
        self._check_change_status_permission(request)
        if request.method == "GET":
            self.message_user(
                request,
                gettext("Select the orders in the list, then choose the action."),
                messages.WARNING,
            )
            return self._to_changelist()
        try:
            pks = parse_ids(request.POST.getlist("ids"))
        except SelectionError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return self._to_changelist()
        return self._change_status(request, pks, single=False)

    def _change_status(self, request, pks: list[int], *, single: bool):
        self._check_change_status_permission(request)
        if single and not (order_pk_in_range(pks[0]) and Order.objects.filter(pk=pks[0]).exists()):
            self.message_user(
                request,
                gettext("There is no order with id %(pk)s.") % {"pk": pks[0]},
                messages.WARNING,
            )
            return self._to_changelist()
        if request.method == "GET":
            return self._status_form(request, pks, ChangeStatusForm(), single=single)
        step = request.POST.get("step")
        if step == "apply":
            return self._apply(request, pks, single=single)
        form = ChangeStatusForm(request.POST)
        if step != "confirm" or not form.is_valid():
            return self._status_form(request, pks, form, single=single)
        return self._confirmation(
            request, pks, form.cleaned_data["new_status"], form.cleaned_data["reason"], single
        )

    # -- steps ---------------------------------------------------------------

    def _status_form(self, request, pks: list[int], form: ChangeStatusForm, *, single: bool):
        orders = list(Order.objects.filter(pk__in=_in_range(pks)).order_by("pk"))
        context = {
            **self._context(request, single=single, orders=orders),
            "title": gettext("Change payment status"),
            "form": form,
            "pks": pks,
        }
        return TemplateResponse(request, TEMPLATES.format("form"), context)

    def _confirmation(self, request, pks, new_status: str, reason: str, single: bool):
        found = Order.objects.filter(pk__in=_in_range(pks)).in_bulk()
        rows = [PlannedChange(pk, found.get(pk), new_status) for pk in pks]
        plan = signing.dumps(
            {
                "user": request.user.pk,
                "to": new_status,
                "reason": reason,
                "seen": [[row.pk, row.status] for row in rows if row.order is not None],
                "missing": [row.pk for row in rows if row.order is None],
            },
            salt=PLAN_SALT,
            compress=True,
        )
        discouraged = [row for row in rows if row.warning]
        may_confirm = request.user.has_perm(CONFIRM_DISCOURAGED_PERMISSION)
        to_change = [row for row in rows if row.order and not row.already]
        applicable = [row for row in to_change if may_confirm or not row.warning]
        context = {
            **self._context(request, single=single, orders=[r.order for r in rows if r.order]),
            "title": gettext("Confirm the payment status change"),
            "rows": rows,
            "new_status": new_status,
            "new_badge": status_badge(new_status),
            "reason": reason,
            "plan": plan,
            "pks": pks,
            "discouraged": discouraged,
            "applicable": applicable,
            "only_discouraged": bool(applicable) and len(discouraged) == len(applicable),
            "may_confirm_discouraged": may_confirm,
        }
        return TemplateResponse(request, TEMPLATES.format("confirm"), context)

    def _apply(self, request, pks: list[int], *, single: bool):
        try:
            plan = signing.loads(request.POST.get("plan", ""), salt=PLAN_SALT, max_age=PLAN_MAX_AGE)
        except signing.SignatureExpired:
            return self._start_again(
                request,
                pks,
                single,
                gettext("The confirmation page was open too long; check the orders again."),
            )
        except signing.BadSignature:
            return self._start_again(
                request,
                pks,
                single,
                gettext(
                    "The change was not confirmed on the confirmation page; "
                    "nothing was changed. Fill in the form and confirm."
                ),
            )
        seen = {int(pk): status for pk, status in plan["seen"]}
        planned = sorted([*seen, *plan["missing"]])
        if plan["user"] != request.user.pk or planned != pks:
            return self._start_again(
                request,
                pks,
                single,
                gettext("The confirmation does not match this selection; nothing was changed."),
            )
        try:
            summary = override_statuses(
                planned,
                plan["to"],
                user=request.user,
                reason=plan["reason"],
                allow_discouraged=request.POST.get("confirm_discouraged") == "yes",
                seen_statuses=seen,
            )
        except InvalidOrder as exc:
            return self._start_again(request, pks, single, str(exc))
        self._report(request, summary)
        context = {
            **self._context(request, single=single, orders=[o.order for o in summary.outcomes]),
            "title": gettext("Payment status change: summary"),
            "summary": summary,
            "lines": [
                {
                    "pk": outcome.pk,
                    "order": outcome.order,
                    "badge": status_badge(outcome.old_status) if outcome.old_status else "",
                    "result": outcome.result,
                    "label": OverrideResult(outcome.result).label,
                    "message": outcome.message,
                    "refused": outcome.refused,
                    "failed": outcome.result == OverrideResult.FAILED,
                }
                for outcome in summary.outcomes
            ],
            "new_badge": status_badge(summary.new_status),
            "reason": plan["reason"],
        }
        return TemplateResponse(request, TEMPLATES.format("summary"), context)

    # -- helpers -------------------------------------------------------------

    def _check_change_status_permission(self, request) -> None:
        if not (
            self.has_view_permission(request)
            and self.has_override_payment_status_permission(request)
        ):
            raise PermissionDenied

    def _start_again(self, request, pks, single: bool, message: str):
        self.message_user(request, message, messages.ERROR)
        response = self._status_form(request, pks, ChangeStatusForm(), single=single)
        response.status_code = 400
        return response

    def _report(self, request, summary: OverrideSummary) -> None:
        changed, refused, failed = summary.changed, summary.refused, summary.failed
        if changed:
            self.message_user(
                request,
                ngettext(
                    "Changed the payment status of %(count)s order to %(status)s.",
                    "Changed the payment status of %(count)s orders to %(status)s.",
                    len(changed),
                )
                % {"count": len(changed), "status": PaymentStatus(summary.new_status).label},
                messages.SUCCESS,
            )
        if refused or failed:
            self.message_user(
                request,
                gettext("%(refused)s refused, %(failed)s failed: see the summary below for why.")
                % {"refused": len(refused), "failed": len(failed)},
                messages.ERROR if failed else messages.WARNING,
            )

    def _to_changelist(self) -> HttpResponseRedirect:
        info = self.opts.app_label, self.opts.model_name
        return HttpResponseRedirect(reverse("admin:{}_{}_changelist".format(*info)))

    def _context(self, request, *, single: bool, orders: list) -> dict:
        info = self.opts.app_label, self.opts.model_name
        single_order = orders[0] if single and orders else None
        if single_order is not None:
            action = reverse("admin:{}_{}_change_status".format(*info), args=[single_order.pk])
        else:
            action = reverse("admin:{}_{}_change_status_many".format(*info))
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "media": self.media + forms.Media(css={"all": [ADMIN_CSS]}),
            "single_order": single_order,
            "single_badge": status_badge(single_order.status) if single_order else "",
            "form_action": action,
            "changelist_url": reverse("admin:{}_{}_changelist".format(*info)),
        }
