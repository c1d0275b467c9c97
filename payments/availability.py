"""
Which money actions staff may take on an order, and why not the others.

One function decides for every page that offers the actions (buttons, the
action forms): the order's status through the model's transitions, the
method's capabilities, the balances the services enforce, the payment
requests still in flight and the user's permissions. The services check all
of it again when the action is submitted; this only says beforehand, in
words, what they would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Q, Sum
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django_fsm import can_proceed

from orderflow.money import ZERO, format_money, money
from orders.models import OVERRIDE_PERMISSION, Order, PaymentStatus
from payments import offline
from payments.gateways.registry import get_gateway
from payments.models import (
    PaymentTransaction,
    RequestAction,
    TransactionKind,
)
from payments.requests import pending_amount

CAPTURE_PERMISSION = "payments.capture_payment"
VOID_PERMISSION = CAPTURE_PERMISSION  # one decision about held money: capture or release it
REFUND_PERMISSION = "payments.refund_payment"
OFFLINE_PERMISSION = offline.PERMISSION

RECORD_PAYMENT = "record_payment"
RECORD_REFUND = "record_refund"
CAPTURE = "capture"
VOID = "void"
REFUND = "refund"
CHANGE_STATUS = "change_status"

MONEY_PERMISSIONS = (
    CAPTURE_PERMISSION,
    VOID_PERMISSION,
    REFUND_PERMISSION,
    OFFLINE_PERMISSION,
    OVERRIDE_PERMISSION,
)


@dataclass(frozen=True)
class MoneyAction:
    """One action on an order: whether it can be taken now, and if not, why."""

    name: str
    label: str
    allowed: bool
    why_not: str = ""
    limit: Decimal | None = None
    """The most money the action may move now (None: it moves no chosen amount)."""
    partial: bool = True
    """Whether less than ``limit`` may be asked for."""
    url: str = ""
    """Where the action is taken, for actions that live on another page."""


@dataclass(frozen=True)
class MoneyActions:
    """The actions that apply to an order's payment method, in the order shown."""

    actions: tuple[MoneyAction, ...]
    permitted_any: bool
    """Whether the user may take any money action at all (a viewer may not)."""

    def __iter__(self):
        return iter(self.actions)

    def get(self, name: str) -> MoneyAction | None:
        return next((action for action in self.actions if action.name == name), None)

    @property
    def allowed(self) -> list[MoneyAction]:
        return [action for action in self.actions if action.allowed]

    @property
    def refused(self) -> list[MoneyAction]:
        return [action for action in self.actions if not action.allowed]


def held_amount(order: Order) -> Decimal:
    """
    Return the money an authorization still holds: authorized, not voided, not captured.

    Read from the ledger (authorizations less voids), less what the order captured.
    """
    sums = PaymentTransaction.objects.filter(order=order).aggregate(
        authorized=Sum("amount", filter=Q(kind=TransactionKind.AUTHORIZATION)),
        voided=Sum("amount", filter=Q(kind=TransactionKind.VOID)),
    )
    return held_from(money(sums["authorized"]), money(sums["voided"]), order)


def held_from(authorized: Decimal, voided: Decimal, order: Order) -> Decimal:
    """The held amount from the ledger's authorization and void sums."""
    if voided >= authorized:
        return ZERO
    return max(money(authorized - voided - order.captured_amount), ZERO)


def outstanding_amount(order: Order) -> Decimal:
    """What is left to pay: the total less the money kept (never negative)."""
    return max(money(order.total - order.net_paid_amount), ZERO)


def refundable_amount(order: Order) -> Decimal:
    """What the services let staff refund: captured less refunded."""
    return max(money(order.captured_amount - order.refunded_amount), ZERO)


def money_actions(order: Order, user: Any, *, held: Decimal | None = None) -> MoneyActions:
    """
    Return the money actions of ``order`` for ``user``: allowed, or refused with a reason.

    Offline methods get Record payment and Record refund; online methods get
    Capture, Void and Refund; both get Change status where that page exists.
    ``held`` is ``held_amount(order)`` when the caller has it already.
    """
    status = PaymentStatus(order.status).label

    actions: list[MoneyAction] = []
    if not order.payment_method.is_online:
        actions.append(_record_payment(order, user, status))
        actions.append(_record_refund(order, user, status))
    else:
        if held is None:
            held = held_amount(order)
        actions.append(_capture(order, user, held, status))
        actions.append(_void(order, user, status))
        actions.append(_refund(order, user, status))
    change_status = _change_status(order, user)
    if change_status is not None:
        actions.append(change_status)
    permitted = any(user.has_perm(perm) for perm in MONEY_PERMISSIONS)
    return MoneyActions(tuple(actions), permitted)


def _record_payment(order: Order, user: Any, status: str) -> MoneyAction:
    name, label = RECORD_PAYMENT, _("Record payment")
    if not user.has_perm(OFFLINE_PERMISSION):
        return _no_permission(name, label, _("record payments"))
    outstanding = outstanding_amount(order)
    if outstanding <= 0:
        return _refuse(name, label, _("Nothing is outstanding: the order is paid in full."))
    if not can_proceed(order.capture):
        why = _("A payment cannot be recorded while the order is %(status)s.") % {"status": status}
        if order.status == PaymentStatus.PAID:
            # Marked Paid by hand before the money came: the way to record it.
            why += " " + _(
                "To record money that arrived after the order was marked Paid, first "
                "change its status back to Awaiting payment."
            )
        return _refuse(name, label, why)
    return MoneyAction(name, label, True, limit=outstanding)


def _record_refund(order: Order, user: Any, status: str) -> MoneyAction:
    name, label = RECORD_REFUND, _("Record refund")
    if not user.has_perm(OFFLINE_PERMISSION):
        return _no_permission(name, label, _("record refunds"))
    refundable = refundable_amount(order)
    if refundable <= 0:
        return _refuse(name, label, _("Nothing left to refund."))
    if not can_proceed(order.refund):
        why = _("A refund cannot be recorded while the order is %(status)s.") % {"status": status}
        return _refuse(name, label, why + _refund_hint(order, refundable))
    return MoneyAction(name, label, True, limit=refundable)


def _refund_hint(order: Order, refundable: Decimal) -> str:
    """How to give back money an order holds in a status that refuses refunds, or ""."""
    if order.status not in (PaymentStatus.CANCELLED, PaymentStatus.DECLINED):
        return ""
    # Cancelled or declined with money still captured (the order needs attention).
    target = PaymentStatus.PAID if refundable >= order.total else PaymentStatus.PARTIALLY_PAID
    return " " + _(
        "To give back the %(amount)s captured, first change its status to %(target)s."
    ) % {"amount": format_money(refundable, order.currency), "target": target.label}


def _refuse(name: str, label: str, why: str) -> MoneyAction:
    return MoneyAction(name, label, False, why)


def _no_permission(name: str, label: str, verb: str) -> MoneyAction:
    return _refuse(name, label, _("You do not have permission to %(verb)s.") % {"verb": verb})


def _in_progress(order: Order, action: str) -> tuple[Decimal, str]:
    """The money of ``action`` requests in flight, and a sentence saying so."""
    pending = pending_amount(order, action)
    if not pending:
        return ZERO, ""
    return pending, _("A %(action)s of %(amount)s is still in progress.") % {
        "action": RequestAction(action).label.lower(),
        "amount": format_money(pending, order.currency),
    }


def _capture(order: Order, user: Any, held: Decimal, status: str) -> MoneyAction:
    name, label = CAPTURE, _("Capture")
    if not user.has_perm(CAPTURE_PERMISSION):
        return _no_permission(name, label, _("capture payments"))
    # The service's rule: the capture transition, and never from Awaiting payment.
    if not can_proceed(order.capture) or order.status == PaymentStatus.AWAITING_PAYMENT:
        return _refuse(
            name,
            label,
            _("Only an authorized payment can be captured; the order is %(status)s.")
            % {"status": status},
        )
    if held <= 0:
        return _refuse(name, label, _("No authorization holds money to capture."))
    pending, in_progress = _in_progress(order, RequestAction.CAPTURE)
    limit = min(held, money(order.total - order.captured_amount)) - pending
    if limit <= 0:
        return _refuse(name, label, in_progress or _("Nothing left to capture."))
    missing_key = _missing_credentials(order)
    if missing_key:
        return _refuse(name, label, missing_key)
    return MoneyAction(name, label, True, limit=money(limit))


def _void(order: Order, user: Any, status: str) -> MoneyAction:
    name, label = VOID, _("Void")
    if not user.has_perm(VOID_PERMISSION):
        return _no_permission(name, label, _("void payments"))
    if not can_proceed(order.void) or order.captured_amount > 0:
        return _refuse(
            name,
            label,
            _("Only an authorized, uncaptured payment can be voided; the order is %(status)s.")
            % {"status": status},
        )
    for action in (RequestAction.VOID, RequestAction.CAPTURE):
        pending, in_progress = _in_progress(order, action)
        if pending:
            return _refuse(name, label, in_progress)
    missing_key = _missing_credentials(order)
    if missing_key:
        return _refuse(name, label, missing_key)
    return MoneyAction(name, label, True)


def _refund(order: Order, user: Any, status: str) -> MoneyAction:
    name, label = REFUND, _("Refund")
    method = order.payment_method
    if not method.supports_refunds:
        return _refuse(
            name,
            label,
            _("This %(method)s method does not support refunds.") % {"method": method.name},
        )
    if not user.has_perm(REFUND_PERMISSION):
        return _no_permission(name, label, _("refund"))
    refundable = refundable_amount(order)
    if refundable <= 0:
        return _refuse(name, label, _("Nothing left to refund."))
    if not can_proceed(order.refund):
        why = _("Only a paid or partially paid order can be refunded; the order is %(status)s.") % {
            "status": status
        }
        return _refuse(name, label, why + _refund_hint(order, refundable))
    pending, in_progress = _in_progress(order, RequestAction.REFUND)
    partial = method.supports_partial_refunds
    if pending and not partial:
        # The method refunds only the whole balance, and part of it is in flight.
        return _refuse(name, label, in_progress)
    limit = refundable - pending
    if limit <= 0:
        return _refuse(name, label, in_progress)
    missing_key = _missing_credentials(order)
    if missing_key:
        return _refuse(name, label, missing_key)
    return MoneyAction(name, label, True, limit=money(limit), partial=partial)


def _missing_credentials(order: Order) -> str:
    """Why the gateway can only refuse this method's calls (no API key), or ""."""
    method = order.payment_method
    gateway = get_gateway(method.gateway)
    if not getattr(gateway, "needs_credentials", False) or method.api_key.strip():
        return ""
    return _(
        "The %(method)s payment method has no API key: add one to the payment method "
        "to capture, void or refund through the gateway."
    ) % {"method": method.name}


def _change_status(order: Order, user: Any) -> MoneyAction | None:
    try:
        url = reverse("admin:orders_order_change_status", args=[order.pk])
    except NoReverseMatch:
        return None  # no such page in this installation
    name, label = CHANGE_STATUS, _("Change status")
    if not user.has_perm(OVERRIDE_PERMISSION):
        return _no_permission(name, label, _("change the payment status"))
    return MoneyAction(name, label, True, url=url)
