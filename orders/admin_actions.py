"""
The order page's money actions as admin views: record, capture, void, refund,
and acknowledge or replay the gateway event behind an attention reason.

Each view authorizes on the server, parses the form and calls one payment
service, outside any transaction: the staff payment services open their own
durable one. ``payments.availability`` says beforehand what the services
would refuse; the services have the last word.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from orderflow.money import format_money
from orders.admin_action_forms import (
    CaptureForm,
    MoneyActionForm,
    RecordPaymentForm,
    RecordRefundForm,
    RefundForm,
    VoidForm,
    plain_amount,
)
from orders.admin_display import status_badge
from orders.admin_page import ACKNOWLEDGE_PERMISSION, REPLAY_PERMISSION
from orders.exceptions import OrderError
from orders.models import Order, PaymentStatus
from payments import availability
from payments.exceptions import PaymentError, RequestAlreadySubmitted
from payments.facts import ApplyResult
from payments.inbox import acknowledge_events, replay_gateway_event
from payments.models import REPLAYABLE_OUTCOMES, EventOutcome, GatewayEvent, PaymentRequest
from payments.services import (
    capture_payment,
    new_request_token,
    record_offline_payment,
    record_offline_refund,
    refund_payment,
    void_payment,
)


@dataclass(frozen=True)
class ActionPage:
    """One money action's page: its form, permission, service call and wording."""

    name: str
    title: Any
    button: Any
    form_class: type[MoneyActionForm]
    permission: str
    run: Callable[[Order, Any, dict[str, Any]], ApplyResult]
    done: Any
    """The success message: amount, number, status, reference."""


ACTION_PAGES = {
    page.name: page
    for page in [
        ActionPage(
            availability.RECORD_PAYMENT,
            gettext_lazy("Record a payment received"),
            gettext_lazy("Record payment"),
            RecordPaymentForm,
            availability.OFFLINE_PERMISSION,
            lambda order, user, data: record_offline_payment(
                order,
                amount=data["amount"],
                reference=data["reference"],
                reason=data["reason"],
                user=user,
            ),
            gettext_lazy(
                "Recorded a payment of %(amount)s (%(reference)s) on order %(number)s; "
                "its payment status is now %(status)s."
            ),
        ),
        ActionPage(
            availability.RECORD_REFUND,
            gettext_lazy("Record a refund paid back"),
            gettext_lazy("Record refund"),
            RecordRefundForm,
            availability.OFFLINE_PERMISSION,
            lambda order, user, data: record_offline_refund(
                order,
                amount=data["amount"],
                reference=data["reference"],
                reason=data["reason"],
                user=user,
            ),
            gettext_lazy(
                "Recorded a refund of %(amount)s (%(reference)s) on order %(number)s; "
                "its payment status is now %(status)s."
            ),
        ),
        ActionPage(
            availability.CAPTURE,
            gettext_lazy("Capture the authorized payment"),
            gettext_lazy("Capture"),
            CaptureForm,
            availability.CAPTURE_PERMISSION,
            lambda order, user, data: capture_payment(
                order, user=user, amount=data["amount"], token=data["token"]
            ),
            gettext_lazy(
                "Captured %(amount)s on order %(number)s; its payment status is now %(status)s."
            ),
        ),
        ActionPage(
            availability.VOID,
            gettext_lazy("Void the authorization"),
            gettext_lazy("Void"),
            VoidForm,
            availability.VOID_PERMISSION,
            lambda order, user, data: void_payment(order, user=user, token=data["token"]),
            gettext_lazy(
                "Voided the authorization of order %(number)s; its payment status is now "
                "%(status)s."
            ),
        ),
        ActionPage(
            availability.REFUND,
            gettext_lazy("Refund through the gateway"),
            gettext_lazy("Refund"),
            RefundForm,
            availability.REFUND_PERMISSION,
            lambda order, user, data: refund_payment(
                order,
                user=user,
                amount=data["amount"],
                reason=data["reason"],
                token=data["token"],
            ),
            gettext_lazy(
                "Refunded %(amount)s on order %(number)s; its payment status is now %(status)s."
            ),
        ),
    ]
}


def action_urls(model_admin) -> list:
    """The money actions' URLs, to put before the ModelAdmin's own."""
    wrap = model_admin.admin_site.admin_view
    urls = [
        path(
            f"<path:object_id>/{name.replace('_', '-')}/",
            wrap(_action_view(model_admin, page)),
            name=f"orders_order_{name}",
        )
        for name, page in ACTION_PAGES.items()
    ]
    urls += [
        path(
            "<path:object_id>/events/<int:event_id>/acknowledge/",
            wrap(partial(_acknowledge, model_admin)),
            name="orders_order_acknowledge_event",
        ),
        path(
            "<path:object_id>/events/<int:event_id>/replay/",
            wrap(partial(_replay, model_admin)),
            name="orders_order_replay_event",
        ),
    ]
    return urls


def _order_for(model_admin, request, object_id: str) -> Order:
    """The order of the URL, if the user may see it; 404 for an unknown or odd id."""
    order = model_admin.get_object(request, unquote(object_id))
    if order is None:
        raise Http404(_("No such order."))
    if not model_admin.has_view_or_change_permission(request, order):
        raise PermissionDenied
    return order


def order_url(order: Order) -> str:
    return reverse("admin:orders_order_change", args=[order.pk])


def _action_view(model_admin, page: ActionPage):
    def view(request, object_id):
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        order = _order_for(model_admin, request, object_id)
        if not request.user.has_perm(page.permission):
            raise PermissionDenied
        action = availability.money_actions(order, request.user).get(page.name)
        if action is None:
            # Not an action of this order's kind of method (capture on a cheque order).
            raise Http404(_("This action does not apply to order %(n)s.") % {"n": order.number})
        if request.method == "GET":
            if not action.allowed:
                model_admin.message_user(request, action.why_not, messages.ERROR)
                return HttpResponseRedirect(order_url(order))
            initial = {"token": new_request_token()} if page.form_class.has_token else None
            form = page.form_class(initial=initial, currency=order.currency, action=action)
            return _render(model_admin, request, order, page, form, action)
        return _submit(model_admin, request, order, page, action)

    return view


def _submit(model_admin, request, order: Order, page: ActionPage, action):
    data = request.POST.copy()
    form = page.form_class(data, currency=order.currency, action=action)
    if not form.is_valid():
        if page.form_class.has_token and "token" in form.errors:
            data["token"] = new_request_token()
        return _render(model_admin, request, order, page, form, action)
    try:
        result = page.run(order, request.user, form.cleaned_data)
    except RequestAlreadySubmitted as exc:
        # A second click, a reload, the back button: nothing was sent again.
        model_admin.message_user(request, str(exc), messages.WARNING)
        return HttpResponseRedirect(order_url(order))
    except (OrderError, PermissionDenied) as exc:
        form.add_error(None, str(exc) or _("You are not allowed to do this."))
        token = form.cleaned_data.get("token")
        if token and PaymentRequest.objects.filter(token=token).exists():
            # The request was recorded (and refused by the gateway): another
            # attempt is another intent, with a token of its own.
            data["token"] = new_request_token()
        # The form again, on the order as it is now (the money may have moved).
        order = Order.objects.select_related("payment_method").get(pk=order.pk)
        action = availability.money_actions(order, request.user).get(page.name) or action
        if not form.amount_editable and action.limit is not None:
            data["amount"] = plain_amount(action.limit, order.currency)
        return _render(model_admin, request, order, page, form, action)
    _report(model_admin, request, page, form.cleaned_data, result)
    return HttpResponseRedirect(order_url(order))


def _report(model_admin, request, page: ActionPage, data: dict, result: ApplyResult) -> None:
    saved = result.order
    row = result.transaction
    amount = row.amount if row is not None else data.get("amount")
    values = {
        "amount": format_money(amount, saved.currency) if amount is not None else "",
        "reference": row.reference if row is not None else data.get("reference", ""),
        "number": saved.number,
        "status": PaymentStatus(saved.status).label,
    }
    if result.outcome == EventOutcome.APPLIED:
        model_admin.message_user(request, page.done % values, messages.SUCCESS)
    else:
        # A duplicate (the same cheque again), or money the status did not allow.
        outcome = EventOutcome(result.outcome).label
        model_admin.message_user(request, f"{outcome}: {result.reason}", messages.WARNING)


def _render(model_admin, request, order: Order, page: ActionPage, form, action):
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "original": order,
        "title": _("%(action)s: order %(number)s") % {"action": page.title, "number": order.number},
        "page": page,
        "form": form,
        "action": action,
        "status_badge": status_badge(order.status),
        "order_url": order_url(order),
        "limit": format_money(action.limit, order.currency)
        if action is not None and action.limit is not None
        else "",
        "media": model_admin.media,
    }
    return TemplateResponse(request, "admin/orders/order/money_action.html", context)


# -- the gateway event behind an attention reason ---------------------------------


def _event_for(model_admin, request, object_id: str, event_id: int) -> tuple[Order, GatewayEvent]:
    order = _order_for(model_admin, request, object_id)
    event = get_object_or_404(GatewayEvent, pk=event_id, order=order)
    return order, event


def _back(request, order: Order) -> HttpResponseRedirect:
    """Back to ``next`` when it is a page of this site, else to the order page."""
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(order_url(order))


def _acknowledge(model_admin, request, object_id: str, event_id: int):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perm(ACKNOWLEDGE_PERMISSION):
        raise PermissionDenied
    order, event = _event_for(model_admin, request, object_id, event_id)
    if acknowledge_events(GatewayEvent.objects.filter(pk=event.pk), user=request.user):
        model_admin.message_user(
            request,
            _("Acknowledged event %(id)s: order %(number)s no longer needs attention for it.")
            % {"id": event.event_id, "number": order.number},
            messages.SUCCESS,
        )
    else:
        model_admin.message_user(
            request,
            _("Event %(id)s does not need acknowledging; nothing changed.")
            % {"id": event.event_id},
            messages.WARNING,
        )
    return _back(request, order)


def _replay(model_admin, request, object_id: str, event_id: int):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perm(REPLAY_PERMISSION):
        raise PermissionDenied
    order, event = _event_for(model_admin, request, object_id, event_id)
    try:
        replay_gateway_event(event)
    except PaymentError as exc:
        model_admin.message_user(request, str(exc), messages.ERROR)
        return _back(request, order)
    event.refresh_from_db()
    model_admin.message_user(
        request,
        _("Replayed event %(id)s: %(outcome)s. %(detail)s")
        % {"id": event.event_id, "outcome": event.get_outcome_display(), "detail": event.detail},
        messages.WARNING if event.outcome in REPLAYABLE_OUTCOMES else messages.SUCCESS,
    )
    return _back(request, order)
