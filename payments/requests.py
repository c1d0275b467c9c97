"""
Payment requests: what staff asked a gateway, recorded before it is asked.

A request goes through three committed writes: it is recorded as pending
under the order's row lock, the gateway's answer is stored as soon as it
arrives, and the answer is applied to the ledger together with marking the
request succeeded. Whatever stops the process in between, the row says how
far it got; ``payments.services.recover_payment_requests`` finishes it. This
module keeps the rows; the services call the gateway and apply the answer.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from orderflow.money import format_money, money
from orders.models import Order
from payments.exceptions import InvalidPaymentEvent, PaymentError, RequestAlreadySubmitted
from payments.gateways.base import OutboundRequest, OutboundResult
from payments.models import PaymentRequest, PaymentTransaction, RequestStatus

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

CLAIM_LEASE = timedelta(minutes=5)
"""How long a process may work on a request before recovery may take it over.
Far longer than one gateway call can last: the Stripe client gives up after
5 s to connect and 20 s to read, and retries twice, so about 80 s at worst.
A process that stops without releasing its claim delays recovery this long."""


def new_token() -> str:
    """Return a token for one staff intent, to be issued with the form that submits it."""
    return secrets.token_urlsafe(24)


def clean_token(token: str) -> str:
    """Return ``token`` if it looks like one the forms issue; raise PaymentError if not."""
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise PaymentError(_("The request token is not valid; reload the form and try again."))
    return token


def pending_amount(order: Order, action: str) -> Decimal:
    """Return the money of ``action`` requests for the order still in flight."""
    total = (
        PaymentRequest.objects.unfinished()
        .filter(order=order, action=action)
        .aggregate(total=Sum("amount"))["total"]
    )
    return money(total)


def _describe(request: PaymentRequest, *, number: str) -> dict[str, str]:
    return {
        "action": request.get_action_display().lower(),
        "amount": format_money(request.amount, request.currency),
        "n": number,
        "when": date_format(timezone.localtime(request.created_at), "DATETIME_FORMAT"),
    }


def check_token_unused(token: str, *, order: Order, action: str, amount: Decimal | None) -> None:
    """
    Raise if ``token`` already names a request; the caller holds the order lock.

    The same order, action and amount (None: "the default amount") is the
    same click again: RequestAlreadySubmitted, saying what became of it. Any
    other use is a form reused for something else: PaymentError.
    """
    request = PaymentRequest.objects.filter(token=token).select_related("order").first()
    if request is None:
        return
    values = _describe(request, number=request.order.number)
    same = (
        request.order_id == order.pk
        and request.action == action
        and (amount is None or money(amount) == request.amount)
    )
    if not same:
        raise PaymentError(
            _(
                "This form was already used for another request (the %(action)s of "
                "%(amount)s on order %(n)s); reload the form to make a new request."
            )
            % values
        )
    if request.status == RequestStatus.PENDING:
        state = _("it is still in progress")
    elif request.status == RequestStatus.SUCCEEDED:
        state = _("it succeeded")
    else:
        state = _("it failed: %(detail)s") % {"detail": request.detail}
    raise RequestAlreadySubmitted(
        _(
            "The %(action)s of %(amount)s on order %(n)s was already submitted on "
            "%(when)s; %(state)s. Nothing was sent again."
        )
        % {**values, "state": state},
        request=request,
    )


def record_request(
    *,
    order: Order,
    action: str,
    amount: Decimal,
    token: str,
    checkout_reference: str,
    user: Any,
    channel: str,
    reason: str,
) -> PaymentRequest:
    """
    Record a pending request, claimed by the caller; the caller holds the order lock.

    The caller's transaction must commit before the gateway is called, and
    the caller releases the claim once it is done with the request. The
    unique token is the last word when the same token races on two orders.
    """
    request = PaymentRequest(
        order=order,
        payment_method=order.payment_method,
        action=action,
        amount=amount,
        currency=order.currency,
        token=token,
        checkout_reference=checkout_reference,
        requested_by=user if user is not None and user.is_authenticated else None,
        channel=channel,
        reason=reason,
        claimed_until=timezone.now() + CLAIM_LEASE,
    )
    try:
        with transaction.atomic():
            request.save()
    except IntegrityError:
        if not PaymentRequest.objects.filter(token=token).exists():
            raise
        check_token_unused(token, order=order, action=action, amount=amount)
        raise  # not reached: the token is taken, so the check above raised
    return request


def outbound(request: PaymentRequest, *, order_number: str) -> OutboundRequest:
    """Return what is sent to the gateway: the same every time for one request."""
    return OutboundRequest(
        order_number=order_number,
        checkout_reference=request.checkout_reference,
        amount=request.amount,
        currency=request.currency,
        idempotency_key=request.idempotency_key,
    )


def claim(request: PaymentRequest) -> bool:
    """
    Claim an unfinished request no other process is working on; return whether it was.

    One conditional UPDATE decides, so of two processes claiming the same
    request at once only one gets it, on any database. The claim lasts
    CLAIM_LEASE; ``release`` ends it sooner.
    """
    until = timezone.now() + CLAIM_LEASE
    claimed = (
        PaymentRequest.objects.filter(pk=request.pk)
        .unfinished()
        .unclaimed()
        .update(claimed_until=until)
    )
    if claimed:
        request.claimed_until = until
    return bool(claimed)


def release(request: PaymentRequest) -> None:
    """
    End the caller's claim on a request.

    A claim another process took over after the caller's lapsed is left alone.
    """
    if request.claimed_until is None:
        return
    PaymentRequest.objects.filter(pk=request.pk, claimed_until=request.claimed_until).update(
        claimed_until=None
    )
    request.claimed_until = None


def store_answer(request: PaymentRequest, answer: OutboundResult) -> None:
    """
    Keep the gateway's answer, committed on its own, before it is applied.

    An answer is proof that money moved: it is kept even when the request
    was marked failed meanwhile (``apply_answer`` then completes it). Only a
    request that already has an answer keeps the one it has: the same
    idempotency key always gets the same answer.
    """
    if not (answer.reference or "").strip() or answer.amount is None or answer.amount <= 0:
        # Money may have moved all the same: the request stays pending.
        problem = _("The gateway's answer has no reference or no amount; nothing was recorded.")
        note(request, problem)
        raise InvalidPaymentEvent(problem)
    now = timezone.now()
    PaymentRequest.objects.filter(pk=request.pk, answered_at__isnull=True).update(
        answer_reference=answer.reference, answer_amount=answer.amount, answered_at=now
    )
    request.answer_reference = answer.reference
    request.answer_amount = answer.amount
    request.answered_at = now


def note(request: PaymentRequest, detail: str) -> None:
    """Say why a request is still pending (a message for staff, never a secret)."""
    PaymentRequest.objects.filter(pk=request.pk, status=RequestStatus.PENDING).update(detail=detail)
    request.detail = detail


def mark_failed(request: PaymentRequest, detail: str) -> None:
    """
    The gateway refused: no money moved.

    A request whose answer is stored moved money; a refusal never fails it.
    """
    now = timezone.now()
    failed = PaymentRequest.objects.filter(
        pk=request.pk, status=RequestStatus.PENDING, answered_at__isnull=True
    ).update(status=RequestStatus.FAILED, detail=detail, completed_at=now)
    if failed:
        request.status, request.detail, request.completed_at = RequestStatus.FAILED, detail, now


def mark_succeeded(
    request: PaymentRequest, *, row: PaymentTransaction | None, detail: str = ""
) -> None:
    """The answer was applied; the caller holds the request's row lock."""
    request.status = RequestStatus.SUCCEEDED
    request.transaction = row
    request.detail = detail
    request.completed_at = timezone.now()
    request.save(update_fields=["status", "transaction", "detail", "completed_at"])
