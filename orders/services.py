"""
Order actions: placing an order, editing its details and overriding its status by hand.

Each function is one unit of work: it runs in ``transaction.atomic()``,
locks the order row, checks permission and policy, runs one django-fsm
transition and saves. History records take who/why/channel from the audit
context (``orderflow.audit``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django_fsm import has_transition_perm

from orderflow.audit import Channel, audit_context, channel_or
from orderflow.money import InvalidAmount, parse_amount
from orders.attention import refresh_attention
from orders.exceptions import (
    AlreadyInStatus,
    DiscouragedTransition,
    InvalidOrder,
    OrderError,
)
from orders.models import CONFIRM_DISCOURAGED_PERMISSION, Order, PaymentStatus
from orders.policy import discouraged_reason
from payments.gateways.base import CheckoutOutcome, PaymentResult
from payments.models import CaptureMode, PaymentMethod, TransactionKind

logger = logging.getLogger(__name__)


def _validated_email(value: str) -> str:
    value = (value or "").strip()
    if value:
        try:
            validate_email(value)
        except ValidationError:
            raise InvalidOrder(
                _("%(email)r is not a valid email address.") % {"email": value}
            ) from None
    return value


def _amount(value: Any, *, what: str, currency: str) -> Decimal:
    try:
        return parse_amount(value, what=what, currency=currency)
    except InvalidAmount as exc:
        raise InvalidOrder(str(exc)) from None


def _initial_status(method: PaymentMethod, initial: PaymentResult | None, total: Decimal) -> str:
    if not method.is_online:
        if initial is not None:
            raise InvalidOrder(
                _(
                    "Payment method %(code)s is offline; "
                    "an order paid with it has no gateway result."
                )
                % {"code": method.code}
            )
        return PaymentStatus.AWAITING_PAYMENT
    if initial is None or initial.outcome == CheckoutOutcome.PENDING:
        return PaymentStatus.AWAITING_PAYMENT
    if initial.outcome == CheckoutOutcome.DECLINED:
        return PaymentStatus.DECLINED
    if initial.outcome == CheckoutOutcome.AUTHORIZED:
        return PaymentStatus.AUTHORIZED
    # Captured.
    if method.capture_mode == CaptureMode.AUTH:
        raise InvalidOrder(
            _(
                "Payment method %(code)s only authorizes at checkout, but the gateway "
                "result says captured; an order in authorize-only mode never starts paid."
            )
            % {"code": method.code}
        )
    amount = initial.amount if initial.amount is not None else total
    return PaymentStatus.PAID if amount >= total else PaymentStatus.PARTIALLY_PAID


def _checkout_reference_problem(method: PaymentMethod, reference: str) -> str | None:
    """Ask the method's gateway adapter whether ``reference`` can name the payment."""
    # Imported here: the registry loads the adapters, which orders needs only
    # at checkout, never when its models load.
    from payments.gateways.registry import get_gateway

    gateway = get_gateway(method.gateway) if method.gateway else None
    check = getattr(gateway, "checkout_reference_problem", None)
    return check(reference) if check is not None else None


def place_order(
    *,
    number: str,
    total: Decimal | str | int,
    currency: str,
    payment_method: PaymentMethod | str,
    customer_email: str = "",
    initial: PaymentResult | None = None,
    placed_at: datetime | None = None,
) -> Order:
    """
    Create an order in the status its payment method and checkout result imply.

    Money in ``initial`` (an authorization or capture) is written to the
    ledger. ``placed_at`` defaults to now (an import may give the real time).
    Raise InvalidOrder naming the problem when the data is wrong.
    """
    from payments.ledger import record_transaction

    number = (number or "").strip()
    if not number:
        raise InvalidOrder(_("The order number is required."))
    currency = (currency or "").strip().upper()
    if len(currency) != 3 or not currency.isalpha() or not currency.isascii():
        raise InvalidOrder(
            _("Currency %(currency)r is not a 3-letter ISO code.") % {"currency": currency}
        )
    total = _amount(total, what=_("The order total"), currency=currency)
    customer_email = _validated_email(customer_email)
    if isinstance(payment_method, str):
        try:
            payment_method = PaymentMethod.objects.get(code=payment_method)
        except PaymentMethod.DoesNotExist:
            raise InvalidOrder(
                _("There is no payment method %(code)r.") % {"code": payment_method}
            ) from None
    if not payment_method.is_active:
        raise InvalidOrder(
            _("Payment method %(code)s is not active.") % {"code": payment_method.code}
        )
    if initial is not None and not isinstance(initial, PaymentResult):
        raise InvalidOrder(_("initial must be a payments.gateways.PaymentResult."))

    status = _initial_status(payment_method, initial, total)
    money_kind = {
        PaymentStatus.AUTHORIZED: TransactionKind.AUTHORIZATION,
        PaymentStatus.PAID: TransactionKind.CAPTURE,
        PaymentStatus.PARTIALLY_PAID: TransactionKind.CAPTURE,
    }.get(status)
    amount = None
    reference = initial.reference.strip() if initial is not None else ""
    if reference:
        problem = _checkout_reference_problem(payment_method, reference)
        if problem:
            raise InvalidOrder(problem)
    if money_kind is not None:
        amount = initial.amount if initial.amount is not None else total
        amount = _amount(amount, what=_("The checkout amount"), currency=currency)
        if amount > total:
            raise InvalidOrder(
                _("The checkout amount %(amount)s is more than the order total %(total)s.")
                % {"amount": amount, "total": total}
            )
        if not reference:
            raise InvalidOrder(
                _("A %(outcome)s checkout result needs the gateway's reference.")
                % {"outcome": initial.outcome}
            )

    label = PaymentStatus(status).label
    reason = _("Order placed: %(status)s.") % {"status": label}
    with transaction.atomic(), audit_context(channel=channel_or(Channel.STOREFRONT), reason=reason):
        taken = _("An order numbered %(number)s already exists.") % {"number": number}
        if Order.objects.filter(number=number).exists():
            raise InvalidOrder(taken)
        order = Order(
            number=number,
            status=status,
            total=total,
            currency=currency,
            payment_method=payment_method,
            customer_email=customer_email,
            gateway_reference=reference,
            placed_at=placed_at or timezone.now(),
        )
        try:
            with transaction.atomic():
                order.save()
        except IntegrityError:  # placed by someone else since the check above
            raise InvalidOrder(taken) from None
        if money_kind is not None:
            _row, created = record_transaction(
                order=order, kind=money_kind, amount=amount, reference=reference
            )
            if not created:
                raise InvalidOrder(
                    _("The gateway reference %(reference)s is already recorded for another order.")
                    % {"reference": reference}
                )
        refresh_attention(order)
    return order


def update_order_details(order: Order, *, user: Any, customer_email: str) -> Order:
    """
    Change what staff may edit on an order (the customer's email); return the order.

    Only the fields that changed are written, with the row locked: status and
    running totals belong to the transitions and the ledger, and writing back
    values read earlier would undo what a callback committed meanwhile.
    Nothing is saved, and no history is recorded, when nothing changed.
    ``user=None`` is a trusted system channel. Raise PermissionDenied without
    ``orders.change_order``, InvalidOrder for an invalid address,
    ConcurrentChange if the row changed under the save anyway.
    """
    if user is not None and not user.has_perm("orders.change_order"):
        raise PermissionDenied(_("You are not allowed to change orders."))
    wanted = {"customer_email": _validated_email(customer_email)}

    with transaction.atomic():
        locked = Order.objects.lock(order)
        changed = [name for name, value in wanted.items() if getattr(locked, name) != value]
        if not changed:
            return locked
        for name in changed:
            setattr(locked, name, wanted[name])
        labels = ", ".join(str(Order._meta.get_field(name).verbose_name) for name in changed)
        reason = _("Order details changed: %(fields)s.") % {"fields": labels}
        channel = channel_or(Channel.ADMIN if user is not None else Channel.SYSTEM)
        with audit_context(channel=channel, user=user, reason=reason):
            locked.save_fields(*changed, "updated_at")
    return locked


def check_override(
    order: Order, new_status: str, *, user: Any, reason: str, allow_discouraged: bool
) -> str:
    """
    Apply the override rules to an order read under its row lock; return the
    reason to record in its history.

    The one place the rules live, for :func:`override_status` and for the
    set-based path of ``orders.bulk``. It reads only ``order.status`` and the
    user's permissions, and writes nothing. Raise PermissionDenied,
    AlreadyInStatus or DiscouragedTransition, in that order of precedence.
    """
    if user is not None and not has_transition_perm(order.override, user):
        raise PermissionDenied(_("You are not allowed to override payment statuses."))
    old = order.status
    if old == new_status:
        raise AlreadyInStatus(
            _("Order %(number)s is already %(status)s.")
            % {"number": order.number, "status": PaymentStatus(old).label}
        )
    warning = discouraged_reason(old, new_status)
    if warning and not allow_discouraged:
        raise DiscouragedTransition(old, new_status, warning)
    if warning and user is not None and not user.has_perm(CONFIRM_DISCOURAGED_PERMISSION):
        # A clerk may change statuses; going against the advice is a manager's call.
        raise PermissionDenied(
            _("You may not confirm a discouraged status change: %(warning)s") % {"warning": warning}
        )
    if warning:
        return _("%(reason)s (discouraged change confirmed: %(warning)s)") % {
            "reason": reason,
            "warning": warning,
        }
    return reason


def override_status(
    order: Order,
    new_status: str,
    *,
    user: Any,
    reason: str,
    allow_discouraged: bool = False,
) -> Order:
    """
    Set any status by hand, audited; return the updated order.

    ``user=None`` is a trusted system channel (a command, a job). Raise
    PermissionDenied without ``orders.override_payment_status`` (and, for a
    confirmed discouraged change, ``orders.confirm_discouraged_transition``),
    DiscouragedTransition for a discouraged change not confirmed with
    ``allow_discouraged``, AlreadyInStatus when nothing would change. The
    ledger is never touched; a disagreement shows as needing attention.
    """
    if new_status not in PaymentStatus.values:
        raise InvalidOrder(
            _("%(status)r is not a payment status; use one of: %(allowed)s.")
            % {"status": new_status, "allowed": ", ".join(PaymentStatus.values)}
        )
    reason = (reason or "").strip()
    if not reason:
        raise InvalidOrder(_("A reason is required to change a status by hand."))

    with transaction.atomic():
        locked = Order.objects.lock(order)
        record = check_override(
            locked, new_status, user=user, reason=reason, allow_discouraged=allow_discouraged
        )
        with audit_context(channel=channel_or(Channel.SYSTEM), user=user, reason=record):
            locked.override(new_status)
            locked.save_status()
        # An override never touches the ledger: a disagreement shows from now on.
        refresh_attention(locked)
    return locked


class OverrideResult(models.TextChoices):
    """What a bulk override did with one order."""

    CHANGED = "changed", _lazy("Changed")
    """The status was changed to the target."""
    ALREADY = "already", _lazy("Already there")
    """The order already had the target status: nothing to do."""
    DISCOURAGED = "discouraged", _lazy("Refused: discouraged")
    """A discouraged change that was not confirmed."""
    PERMISSION = "permission", _lazy("Refused: not allowed")
    """The user may not make this change."""
    MOVED = "moved", _lazy("Refused: status changed meanwhile")
    """The status is no longer the one the user saw and confirmed."""
    NOT_FOUND = "not_found", _lazy("Refused: not found")
    """No order has this id."""
    FAILED = "failed", _lazy("Failed")
    """Something went wrong; nothing was changed for this order."""


REFUSALS = frozenset(
    {
        OverrideResult.DISCOURAGED,
        OverrideResult.PERMISSION,
        OverrideResult.MOVED,
        OverrideResult.NOT_FOUND,
    }
)


@dataclass(frozen=True)
class OverrideOutcome:
    """One order's line in an :class:`OverrideSummary`."""

    pk: int
    result: str
    order: Order | None = None
    old_status: str = ""
    message: str = ""

    @property
    def refused(self) -> bool:
        return self.result in REFUSALS


@dataclass
class OverrideSummary:
    """What :func:`override_statuses` did, one outcome per order, in primary-key order."""

    new_status: str
    outcomes: list[OverrideOutcome] = field(default_factory=list)

    def with_result(self, *results: str) -> list[OverrideOutcome]:
        return [outcome for outcome in self.outcomes if outcome.result in results]

    @property
    def changed(self) -> list[OverrideOutcome]:
        return self.with_result(OverrideResult.CHANGED)

    @property
    def already(self) -> list[OverrideOutcome]:
        return self.with_result(OverrideResult.ALREADY)

    @property
    def refused(self) -> list[OverrideOutcome]:
        return [outcome for outcome in self.outcomes if outcome.refused]

    @property
    def not_found(self) -> list[OverrideOutcome]:
        return self.with_result(OverrideResult.NOT_FOUND)

    @property
    def failed(self) -> list[OverrideOutcome]:
        return self.with_result(OverrideResult.FAILED)

    def counts(self) -> dict[str, int]:
        """Return how many orders ended in each result (every result named, zeros kept)."""
        return {result: len(self.with_result(result)) for result in OverrideResult.values}


def order_pk_in_range(pk: int) -> bool:
    """Return whether ``pk`` fits the order id column (a larger one cannot exist)."""
    low, high = connection.ops.integer_field_range(Order._meta.pk.get_internal_type())
    return (low is None or pk >= low) and (high is None or pk <= high)


def _pks(orders_or_pks: Iterable[Order | int]) -> list[int]:
    pks = set()
    for item in orders_or_pks:
        pk = item.pk if isinstance(item, Order) else item
        if isinstance(pk, bool) or not isinstance(pk, int):
            raise InvalidOrder(_("%(value)r is not an order id.") % {"value": pk})
        pks.add(pk)
    return sorted(pks)


def override_statuses(
    orders_or_pks: Iterable[Order | int],
    new_status: str,
    *,
    user: Any,
    reason: str,
    allow_discouraged: bool = False,
    seen_statuses: Mapping[int, str] | None = None,
) -> OverrideSummary:
    """
    Override the status of many orders, one by one; return what happened to each.

    Each order goes through :func:`override_status` in a transaction of its
    own, in primary-key order (the same lock order as any other bulk path),
    so one refusal or failure never undoes the others. With
    ``seen_statuses`` (``{pk: status}``, what the user confirmed), an order
    whose status is no longer the one seen is left alone and reported as
    moved: nobody confirmed the change from its new status. Raise
    InvalidOrder, before touching anything, for an unknown target status, a
    blank reason or an id that is not an integer.
    """
    if new_status not in PaymentStatus.values:
        raise InvalidOrder(
            _("%(status)r is not a payment status; use one of: %(allowed)s.")
            % {"status": new_status, "allowed": ", ".join(PaymentStatus.values)}
        )
    if not (reason or "").strip():
        raise InvalidOrder(_("A reason is required to change a status by hand."))
    summary = OverrideSummary(new_status=new_status)
    for pk in _pks(orders_or_pks):
        summary.outcomes.append(
            _override_one(
                pk,
                new_status,
                user=user,
                reason=reason,
                allow_discouraged=allow_discouraged,
                seen=None if seen_statuses is None else seen_statuses.get(pk),
                check_seen=seen_statuses is not None,
            )
        )
    return summary


def _override_one(
    pk: int,
    new_status: str,
    *,
    user: Any,
    reason: str,
    allow_discouraged: bool,
    seen: str | None,
    check_seen: bool,
) -> OverrideOutcome:
    order = None
    old = ""
    try:
        if not order_pk_in_range(pk):
            # Never sent to the database: some drivers raise on an out-of-range integer.
            raise Order.DoesNotExist
        with transaction.atomic():
            order = Order.objects.lock(pk)
            old = order.status
            if check_seen and old not in (seen, new_status):
                return OverrideOutcome(
                    pk,
                    OverrideResult.MOVED,
                    order,
                    old,
                    _(
                        "Order %(number)s is now %(now)s, not %(seen)s as when the change "
                        "was confirmed; it was left alone."
                    )
                    % {
                        "number": order.number,
                        "now": _label(old),
                        "seen": _label(seen) if seen else _("unknown"),
                    },
                )
            order = override_status(
                order, new_status, user=user, reason=reason, allow_discouraged=allow_discouraged
            )
    except Order.DoesNotExist:
        return OverrideOutcome(
            pk,
            OverrideResult.NOT_FOUND,
            message=_("There is no order with id %(pk)s.") % {"pk": pk},
        )
    except AlreadyInStatus as exc:
        return OverrideOutcome(pk, OverrideResult.ALREADY, order, old, str(exc))
    except DiscouragedTransition as exc:
        return OverrideOutcome(pk, OverrideResult.DISCOURAGED, order, old, exc.reason)
    except PermissionDenied as exc:
        return OverrideOutcome(pk, OverrideResult.PERMISSION, order, old, str(exc))
    except OrderError as exc:
        return OverrideOutcome(pk, OverrideResult.FAILED, order, old, str(exc))
    except Exception:
        # One broken order must not stop the others; the trace goes to the log.
        logger.exception("Overriding the status of order id %s failed", pk)
        return OverrideOutcome(
            pk,
            OverrideResult.FAILED,
            order,
            old,
            _("An unexpected error occurred; nothing was changed for this order."),
        )
    return OverrideOutcome(pk, OverrideResult.CHANGED, order, old)


def _label(status: str) -> str:
    try:
        return str(PaymentStatus(status).label)
    except ValueError:
        return status
