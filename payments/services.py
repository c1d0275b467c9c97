"""
Payment services: the verbs staff, callbacks and commands call.

- ``apply_gateway_event``: the one way a money fact reported by a gateway
  (a callback, the answer to a staff request, a replay) reaches an order
  (``payments.facts``).
- ``capture_payment``, ``void_payment``, ``refund_payment``: staff asking a
  gateway to move money, as payment requests (``payments.staff_actions``);
  ``recover_payment_requests`` finishes those a stopped process left pending.
- ``replay_gateway_event``: process a stored callback again (``payments.inbox``).
- ``record_offline_payment``, ``record_offline_refund``: staff recording money
  received or returned by cheque or wire (``payments.offline``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils.translation import gettext as _

from orders.models import Order
from payments import offline, staff_actions
from payments import requests as payment_requests
from payments.exceptions import PaymentError
from payments.facts import ApplyResult, apply_fact
from payments.gateways.base import MoneyFact
from payments.models import GatewayEvent, RequestAction
from payments.staff_actions import RecoverySummary


def apply_gateway_event(
    order: Order,
    fact: MoneyFact,
    *,
    gateway_event: GatewayEvent | None = None,
    user: Any = None,
    order_locked: bool = False,
) -> ApplyResult:
    """
    Apply one money fact to an order, at most once (see ``payments.facts``).

    ``gateway_event`` is the stored callback the fact came from, if any.
    ``order_locked=True``: the caller read ``order`` with its row lock in the
    transaction it runs in, and lets any error roll that transaction back.
    Raise InvalidPaymentEvent for a malformed fact.
    """
    return apply_fact(
        order, fact, gateway_event=gateway_event, user=user, order_locked=order_locked
    )


def new_request_token() -> str:
    """Return a token for one staff intent; issue it with the form that submits it."""
    return payment_requests.new_token()


def capture_payment(
    order: Order, *, user: Any, amount: Any = None, token: str | None = None
) -> ApplyResult:
    """
    Capture authorized money through the gateway (default: what is left to pay).

    ``token`` identifies the staff's intent (see ``new_request_token``); None
    is a new intent. Raise PermissionDenied without
    ``payments.capture_payment``, RequestAlreadySubmitted when the token was
    used for this capture already, PaymentError when the order or method does
    not allow it, GatewayError when the gateway refuses. The gateway's
    reference is recorded, so its later callback for the same capture is a
    duplicate.
    """
    return staff_actions.run(
        order, RequestAction.CAPTURE, amount, user=user, reason=_("Captured by staff."), token=token
    )


def void_payment(order: Order, *, user: Any, token: str | None = None) -> ApplyResult:
    """Release an authorization through the gateway; the order becomes Cancelled."""
    return staff_actions.run(
        order, RequestAction.VOID, None, user=user, reason=_("Voided by staff."), token=token
    )


def refund_payment(
    order: Order, *, user: Any, reason: str, amount: Any = None, token: str | None = None
) -> ApplyResult:
    """
    Refund through the gateway (default: the whole refundable balance).

    Only where the method supports refunds, partially only where it supports
    partial refunds, never beyond the refundable balance less the refunds
    still in flight. ``reason`` is required and goes to the history; ``token``
    works as for ``capture_payment``.
    """
    reason = (reason or "").strip()
    if not reason:
        raise PaymentError(_("A reason is required to refund."))
    return staff_actions.run(
        order, RequestAction.REFUND, amount, user=user, reason=reason, token=token
    )


def recover_payment_requests(*, older_than: timedelta, dry_run: bool = False) -> RecoverySummary:
    """
    Finish payment requests left pending, e.g. by a process that died mid-way.

    A stored answer is applied without calling the gateway; without one, the
    gateway is asked again with the request's own idempotency key. Requests
    younger than ``older_than`` may still be in flight and are left alone.
    """
    return staff_actions.recover(older_than=older_than, dry_run=dry_run)


def replay_gateway_event(gateway_event: GatewayEvent):
    """Process a stored failed or unmatched gateway event again, at most once."""
    from payments.inbox import replay_gateway_event as replay

    return replay(gateway_event)


# -- money received or returned outside any gateway ----------------------------------


def record_offline_payment(
    order: Order, *, amount: Any, reference: str, user: Any, reason: str = ""
) -> ApplyResult:
    """
    Record money received by cheque or wire for an order paid offline.

    This is "mark as paid" for an offline order: a capture ledger row whose
    reference is the cheque or transfer number, and the status the money
    kept implies (Paid or Partially paid) through the same transition as a
    gateway's capture. Money that the order's status does not allow
    (Cancelled, Declined) is still recorded, is kept as an ignored fact and
    flags the order. ``reason`` defaults to what was received; ``user=None``
    is a trusted system channel.

    The same reference again with the same amount is a duplicate: nothing
    is recorded and the result says so. Raise PermissionDenied without
    ``payments.record_offline_payment``; PaymentError for an online order, a
    missing or unusable reference, a bad amount, an amount above what is
    outstanding, or a reference already recorded with another amount or for
    another order.
    """
    return offline.record_payment(
        order, amount=amount, reference=reference, user=user, reason=reason
    )


def record_offline_refund(
    order: Order, *, amount: Any, reference: str, user: Any, reason: str
) -> ApplyResult:
    """
    Record money returned by cheque or wire for an order paid offline.

    A refund ledger row, and the status the money kept implies (Partially
    paid, or Refunded when nothing is kept). Never beyond the refundable
    balance (captured minus refunded). ``reason`` is required. Duplicates,
    permission and errors work as for ``record_offline_payment``.
    """
    return offline.record_refund(
        order, amount=amount, reference=reference, user=user, reason=reason
    )
