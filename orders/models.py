"""
Orders and their payment status.

``Order.status`` is a protected django-fsm field: it is set when the order is
created and afterwards changes only through the transitions below. The
transitions are pure: they change fields on ``self`` and nothing else. The
services (``orders.services``, ``payments.services``) lock the row, write the
ledger, run a transition and save.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import reduce
from operator import or_
from typing import Any

from django.db import models, transaction
from django.db.models import (
    Case,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Round
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django_fsm import (
    RETURN_VALUE,
    ConcurrentTransition,
    ConcurrentTransitionMixin,
    FSMField,
    transition,
)
from simple_history.models import HistoricalRecords

from orderflow.audit import AuditedHistoricalModel
from orderflow.money import MONEY_FIELD, STORAGE_PLACES, ZERO, format_money, money


class PaymentStatus(models.TextChoices):
    """Where an order stands with its money."""

    AWAITING_PAYMENT = "awaiting_payment", _("Awaiting payment")
    """Placed; no money yet."""
    AUTHORIZED = "authorized", _("Authorized")
    """The gateway holds the money; nothing captured yet."""
    PARTIALLY_PAID = "partially_paid", _("Partially paid")
    """Some money captured, or part of it refunded."""
    PAID = "paid", _("Paid")
    """Captured money covers the order total."""
    DECLINED = "declined", _("Declined")
    """The gateway refused the payment."""
    CANCELLED = "cancelled", _("Cancelled")
    """Cancelled before money was taken."""
    REFUNDED = "refunded", _("Refunded")
    """All captured money went back to the customer."""


class DisputeStatus(models.TextChoices):
    """Where a customer's dispute (chargeback) of the payment stands."""

    OPEN = "open", _("Open")
    """The customer disputed the payment; the gateway may withdraw the money."""
    WON = "won", _("Won")
    """Closed in the store's favour; withdrawn money was given back."""
    LOST = "lost", _("Lost")
    """Closed in the customer's favour; the withdrawn money is gone."""


OVERRIDE_PERMISSION = "orders.override_payment_status"
CONFIRM_DISCOURAGED_PERMISSION = "orders.confirm_discouraged_transition"
# Written only by payments.ledger.record_transaction, with the ledger row.
RUNNING_TOTAL_FIELDS = frozenset({"captured_amount", "refunded_amount", "disputed_amount"})


class UnsafeOrderSave(Exception):
    """An existing order was saved in a way that could undo another writer's change."""


@dataclass(frozen=True)
class AttentionRule:
    """A way in which an order's status and its ledger can disagree."""

    code: str
    condition: Q
    message: str
    label: str
    """A few words for a list row; ``message`` explains it on the order page."""


# Each rule is a condition on the order's columns and the annotations of
# OrderQuerySet.with_attention_inputs() (net_sum, has_authorization, has_void,
# has_ignored_event, has_conflicting_event, has_unfinished_event,
# has_unacknowledged_dispute_loss). The same
# rules serve the admin filter (SQL) and the per-order explanation, so they
# are written once.
ATTENTION_RULES: tuple[AttentionRule, ...] = (
    AttentionRule(
        "ignored_event",
        Q(has_ignored_event=True),
        _("A gateway event could not be applied and has not been acknowledged."),
        _("Ignored gateway event"),
    ),
    AttentionRule(
        "conflicting_event",
        Q(has_conflicting_event=True),
        _(
            "A gateway event contradicts what the gateway reported before; check which "
            "is right and acknowledge it."
        ),
        _("Conflicting gateway event"),
    ),
    AttentionRule(
        "dispute_open",
        Q(dispute_status=DisputeStatus.OPEN),
        _(
            "The customer disputed the payment (%(disputed)s withdrawn so far); answer the "
            "dispute in the gateway's dashboard."
        ),
        _("Dispute open"),
    ),
    AttentionRule(
        "dispute_lost",
        Q(dispute_status=DisputeStatus.LOST, has_unacknowledged_dispute_loss=True),
        _(
            "The dispute was lost and %(disputed)s is gone; acknowledge the gateway event "
            "once it is handled."
        ),
        _("Dispute lost"),
    ),
    AttentionRule(
        "unfinished_event",
        Q(has_unfinished_event=True),
        _(
            "A gateway event failed to process or was left unfinished; replay it from "
            "the gateway events page or with replay_gateway_events."
        ),
        _("Unfinished gateway event"),
    ),
    AttentionRule(
        "paid_not_covered",
        Q(status=PaymentStatus.PAID, net_sum__lt=F("total")),
        _("Marked Paid, but the money kept (%(net)s) does not cover the total (%(total)s)."),
        _("Paid, total not covered"),
    ),
    AttentionRule(
        "overpaid",
        Q(net_sum__gt=F("total")),
        _("The money kept (%(net)s) is more than the order total (%(total)s)."),
        _("Overpaid"),
    ),
    AttentionRule(
        "money_kept_without_payment_status",
        Q(
            status__in=[
                PaymentStatus.AWAITING_PAYMENT,
                PaymentStatus.AUTHORIZED,
                PaymentStatus.DECLINED,
                PaymentStatus.CANCELLED,
            ],
            net_sum__gt=0,
        ),
        _("Money has been captured and kept (%(net)s) but the status is %(status)s."),
        _("Money kept, status unpaid"),
    ),
    AttentionRule(
        "partially_paid_mismatch",
        Q(status=PaymentStatus.PARTIALLY_PAID) & (Q(net_sum__lte=0) | Q(net_sum__gte=F("total"))),
        _("Marked Partially paid, but the money kept is %(net)s of %(total)s."),
        _("Partially paid mismatch"),
    ),
    AttentionRule(
        "refunded_money_kept",
        Q(status=PaymentStatus.REFUNDED, net_sum__gt=0),
        _("Marked Refunded, but %(net)s is still kept."),
        _("Refunded, money kept"),
    ),
    AttentionRule(
        "refunded_nothing_captured",
        Q(status=PaymentStatus.REFUNDED, captured_amount__lte=0),
        _("Marked Refunded, but no money was ever captured."),
        _("Refunded, nothing captured"),
    ),
    AttentionRule(
        "authorized_without_authorization",
        Q(status=PaymentStatus.AUTHORIZED, has_authorization=False),
        _("Marked Authorized, but the ledger has no authorization."),
        _("No authorization in ledger"),
    ),
    AttentionRule(
        "cancelled_authorization_open",
        Q(
            status=PaymentStatus.CANCELLED,
            has_authorization=True,
            has_void=False,
            captured_amount__lte=0,
        ),
        _("Cancelled, but the gateway's authorization was never voided."),
        _("Authorization not voided"),
    ),
)
RULES_BY_CODE: dict[str, AttentionRule] = {rule.code: rule for rule in ATTENTION_RULES}


class OrderQuerySet(models.QuerySet):
    def locking(self) -> OrderQuerySet:
        """
        Lock the orders read until the surrounding transaction ends.

        ``FOR NO KEY UPDATE`` on PostgreSQL: it excludes every other lock
        holder of the order, as ``FOR UPDATE`` does, but not the key-share
        lock that inserting a row which refers to the order takes (a gateway
        event, a ledger row). Nothing here changes an order's id, so the
        stronger lock would only make the inbox's insert of a new event wait
        for whoever is changing that order.
        """
        return self.select_for_update(of=("self",), no_key=True)

    def lock(self, order: Order | int) -> Order:
        """Reload an order with its row locked until the surrounding transaction ends."""
        pk = order.pk if isinstance(order, Order) else order
        return self.locking().select_related("payment_method").get(pk=pk)

    def with_attention_inputs(self) -> OrderQuerySet:
        """Annotate what the attention rules read besides the order's own columns."""
        from payments.models import (
            EventOutcome,
            GatewayEvent,
            PaymentTransaction,
            TransactionKind,
        )

        def has(kind: str) -> Exists:
            return Exists(PaymentTransaction.objects.filter(order=OuterRef("pk"), kind=kind))

        def has_event(events) -> Exists:
            return Exists(events.filter(order=OuterRef("pk")))

        events = GatewayEvent.objects

        return self.annotate(
            # Rounded: SQLite computes with floats (100.10 - 0.10 > 100.00).
            net_sum=Round(
                F("captured_amount") - F("refunded_amount"),
                STORAGE_PLACES,
                output_field=models.DecimalField(**MONEY_FIELD),
            ),
            has_authorization=has(TransactionKind.AUTHORIZATION),
            has_void=has(TransactionKind.VOID),
            has_ignored_event=has_event(events.ignored_facts()),
            has_conflicting_event=has_event(events.awaiting_acknowledgement(EventOutcome.CONFLICT)),
            has_unfinished_event=has_event(events.unfinished()),
            has_unacknowledged_dispute_loss=has_event(events.unacknowledged_dispute_losses()),
        )

    def with_attention(self) -> OrderQuerySet:
        """Annotate ``attention_flag`` and one ``attention_<code>`` flag per rule."""
        flags = {
            f"attention_{rule.code}": ExpressionWrapper(
                rule.condition, output_field=models.BooleanField()
            )
            for rule in ATTENTION_RULES
        }
        return (
            self.with_attention_inputs()
            .annotate(**flags)
            .annotate(
                attention_flag=ExpressionWrapper(
                    reduce(or_, (rule.condition for rule in ATTENTION_RULES)),
                    output_field=models.BooleanField(),
                )
            )
        )

    def with_computed_attention(self) -> OrderQuerySet:
        """
        Annotate ``computed_attention``: the code of the first rule that holds
        now, or "" when none does. What ``attention_code`` must store.
        """
        return self.with_attention_inputs().annotate(
            computed_attention=Case(
                *(When(rule.condition, then=Value(rule.code)) for rule in ATTENTION_RULES),
                default=Value(""),
                output_field=models.CharField(),
            )
        )

    def needing_attention(self) -> OrderQuerySet:
        """
        Orders whose status and ledger disagree, or with an event staff must see.

        Read from the stored ``attention_code`` (served by a partial index), which
        the services keep current; ``Order.needs_attention`` evaluates the rules.
        """
        return self.exclude(attention_code="")

    def not_needing_attention(self) -> OrderQuerySet:
        return self.filter(attention_code="")

    def with_ledger_sums(self) -> OrderQuerySet:
        """
        Annotate ``ledger_captured``, ``ledger_refunded`` and ``ledger_disputed``:
        what the order's ledger rows add up to (refunds less refund reversals,
        disputes less dispute reversals), which the running totals must equal.

        One join and GROUP BY over the ledger, whatever the number of orders.
        """
        from payments.models import TransactionKind

        def ledger_sum(kind: str, reversal: str | None = None) -> Round:
            def total(of: str) -> Coalesce:
                return Coalesce(
                    Sum("transactions__amount", filter=Q(transactions__kind=of)),
                    Value(ZERO, output_field=models.DecimalField(**MONEY_FIELD)),
                )

            # Rounded: SQLite sums decimals as floats.
            return Round(
                total(kind) - total(reversal) if reversal else total(kind),
                STORAGE_PLACES,
                output_field=models.DecimalField(**MONEY_FIELD),
            )

        return self.annotate(
            ledger_captured=ledger_sum(TransactionKind.CAPTURE),
            ledger_refunded=ledger_sum(TransactionKind.REFUND, TransactionKind.REFUND_REVERSAL),
            ledger_disputed=ledger_sum(TransactionKind.DISPUTE, TransactionKind.DISPUTE_REVERSAL),
        )


class Order(ConcurrentTransitionMixin, models.Model):
    number = models.CharField(_("number"), max_length=64, unique=True)
    status = FSMField(
        _("payment status"),
        max_length=32,
        choices=PaymentStatus.choices,
        default=PaymentStatus.AWAITING_PAYMENT,
        protected=True,
        db_index=True,
    )
    total = models.DecimalField(_("total"), **MONEY_FIELD)
    currency = models.CharField(_("currency"), max_length=3)
    payment_method = models.ForeignKey(
        "payments.PaymentMethod",
        on_delete=models.PROTECT,
        related_name="orders",
        verbose_name=_("payment method"),
    )
    customer_email = models.EmailField(_("customer email"), blank=True)
    gateway_reference = models.CharField(
        _("gateway reference"),
        max_length=255,
        blank=True,
        db_index=True,
        help_text=_("The gateway's id for this checkout (e.g. a Stripe PaymentIntent)."),
    )
    # Running totals of the ledger's captures and refunds, written by
    # payments.ledger.record_transaction in the same transaction as the
    # ledger row, under the order's row lock. They make the money checks and
    # the attention filter plain column comparisons on a large table.
    captured_amount = models.DecimalField(
        _("captured"), default=ZERO, editable=False, **MONEY_FIELD
    )
    refunded_amount = models.DecimalField(
        _("refunded"), default=ZERO, editable=False, **MONEY_FIELD
    )
    disputed_amount = models.DecimalField(
        _("disputed"),
        default=ZERO,
        editable=False,
        help_text=_("Money the gateway withdrew for disputes and has not given back."),
        **MONEY_FIELD,
    )
    dispute_status = models.CharField(
        _("dispute"),
        max_length=10,
        choices=DisputeStatus.choices,
        blank=True,
        editable=False,
    )
    placed_at = models.DateTimeField(_("placed at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    # What ATTENTION_RULES say, stored so that the list and its filter read a
    # column instead of evaluating every rule over the whole table. Written
    # only by orders.attention.refresh_attention, at the end of each unit of
    # work that can change it, in the same transaction.
    attention_code = models.CharField(
        _("attention"),
        max_length=40,
        blank=True,
        editable=False,
        help_text=_(
            "The first attention rule that held when the order last changed; blank when none."
        ),
    )

    # The stored attention follows the ledger and the events, not the status
    # history: a history row would only show it as it was before the refresh.
    # The history is read one order at a time, by its id (the timeline, the
    # history pages): the order's other indexed columns are not indexed there.
    history = HistoricalRecords(
        bases=[AuditedHistoricalModel],
        excluded_fields=["attention_code"],
        no_db_index=["number", "status", "gateway_reference", "payment_method"],
    )
    objects = OrderQuerySet.as_manager()

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        ordering = ["-placed_at", "-id"]
        indexes = [
            # The list's order, and the placed-date filter.
            models.Index(fields=["-placed_at", "-id"], name="order_placed_idx"),
            # The needs-attention filter: only flagged orders, in the list's order.
            models.Index(
                fields=["-placed_at", "-id"],
                condition=~Q(attention_code=""),
                name="order_attention_idx",
            ),
        ]
        permissions = [
            ("override_payment_status", _("Can override the payment status")),
            (
                "confirm_discouraged_transition",
                _("Can confirm a discouraged payment status change"),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(total__gt=0), name="order_total_positive"),
            models.CheckConstraint(
                condition=Q(status__in=PaymentStatus.values), name="order_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="order_currency_iso"
            ),
            # Never more refunded than captured, never negative: enforced by
            # the database whatever the code does.
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0, captured_amount__gte=F("refunded_amount")),
                name="order_refunds_within_captures",
            ),
            models.CheckConstraint(
                condition=Q(disputed_amount__gte=0), name="order_disputed_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.number

    def save(self, *args: Any, update_fields: Iterable[str] | None = None, **kwargs: Any) -> None:
        # An order is read by a page or a service and saved later; a whole-row
        # save would write back what it read over what callbacks committed
        # meanwhile (money, status). The running totals move only with their
        # ledger row, in a queryset update under the order's lock.
        if not self._state.adding:
            if update_fields is None:
                raise UnsafeOrderSave(
                    f"Order {self.number}: save an existing order with update_fields "
                    "naming the fields that changed."
                )
            # The one exception: totals a ledger row just changed under the
            # order's lock (payments.ledger.record_transaction with
            # save_totals=False), written with the status in one UPDATE, and
            # only with the value that row gave them.
            totals = RUNNING_TOTAL_FIELDS.intersection(update_fields) - self._ledger_totals()
            if totals:
                raise UnsafeOrderSave(
                    f"Order {self.number}: {', '.join(sorted(totals))} change only with "
                    "a ledger row (payments.ledger.record_transaction)."
                )
        super().save(*args, update_fields=update_fields, **kwargs)
        if update_fields is not None and self.__dict__.get("_held_totals"):
            for field in update_fields:
                self._held_totals.pop(field, None)

    def _ledger_totals(self) -> set[str]:
        """The held running totals that still have the value their ledger row gave them."""
        held = self.__dict__.get("_held_totals", {})
        return {field for field, value in held.items() if getattr(self, field) == value}

    def _hold_total(self, field: str) -> None:
        """
        Mark a running total as changed by a ledger row and not yet written.

        Only ``payments.ledger.record_transaction`` calls this, under the
        order's row lock, in the ledger row's transaction, right after setting
        the new total. The next ``save_fields`` writes it with the other
        fields (one UPDATE instead of two); ``save_held_totals`` writes what
        is left before the unit of work ends. A total changed again by
        anything else is refused by ``save``, as any other total change is.
        """
        if field not in RUNNING_TOTAL_FIELDS:
            raise UnsafeOrderSave(f"{field} is not a running total.")
        self.__dict__.setdefault("_held_totals", {})[field] = getattr(self, field)

    def save_held_totals(self) -> None:
        """Write the running totals held by ``_hold_total`` that no save wrote yet."""
        held = self.__dict__.get("_held_totals", {})
        if not held:
            return
        changed = set(held) - self._ledger_totals()
        if changed:
            raise UnsafeOrderSave(
                f"Order {self.number}: {', '.join(sorted(changed))} changed after "
                "its ledger row; a running total changes only with a ledger row."
            )
        type(self).objects.filter(pk=self.pk).update(**held)
        held.clear()

    def refresh_from_db(self, *args, **kwargs) -> None:
        # django-fsm switches protection off for the refresh and back on
        # without try/finally; a failing refresh would leave every Order
        # unprotected for the rest of the process.
        field = self._meta.get_field("status")
        try:
            super().refresh_from_db(*args, **kwargs)
        finally:
            field.protected = True

    def save_fields(self, *fields: str, savepoint: bool = True) -> None:
        """
        Save the named fields of an order the caller has locked, with the
        running totals held by ``_hold_total``.

        Raise ConcurrentChange when the status changed since the order was
        loaded (django-fsm's check), in a savepoint of its own: catching that
        inside the caller's transaction would otherwise poison it.
        ``savepoint=False`` is for a caller that lets every error end its
        transaction (the savepoint would protect nothing).
        """
        from orders.exceptions import ConcurrentChange

        update_fields = [*fields, *sorted(self._ledger_totals() - set(fields))]
        try:
            with transaction.atomic(savepoint=savepoint):
                self.save(update_fields=update_fields)
        except ConcurrentTransition as exc:
            raise ConcurrentChange(
                gettext(
                    "Order %(number)s was changed by someone else at the same moment; try again."
                )
                % {"number": self.number}
            ) from exc

    def save_status(self) -> None:
        """
        Save a transition's result (with the held running totals).

        The caller holds the row lock, so the status cannot have moved under
        it, and lets any error end its transaction: no savepoint.
        """
        self.save_fields("status", "updated_at", savepoint=False)

    # -- money -------------------------------------------------------------

    @property
    def net_paid_amount(self) -> Decimal:
        """Captured minus refunded: the money the store keeps."""
        return self.captured_amount - self.refunded_amount

    @property
    def kept_amount(self) -> Decimal:
        """The money the store keeps, as staff see it: net paid less what disputes withdrew."""
        return self.net_paid_amount - self.disputed_amount

    def status_for_net_paid(self, net_paid: Decimal) -> str:
        """Return the status the ledger implies after money moved."""
        if net_paid <= 0:
            return PaymentStatus.REFUNDED
        if net_paid >= self.total:
            return PaymentStatus.PAID
        return PaymentStatus.PARTIALLY_PAID

    # -- attention ---------------------------------------------------------

    def _attention_row(self) -> Order:
        if "attention_flag" in self.__dict__:
            return self
        return type(self).objects.with_attention().get(pk=self.pk)

    @property
    def needs_attention(self) -> bool:
        """True when status and ledger disagree or a gateway event was ignored."""
        if self.pk is None:
            return False
        return bool(self._attention_row().attention_flag)

    @property
    def attention_reasons(self) -> list[str]:
        """Why this order needs attention, in words for staff (empty if it does not)."""
        if self.pk is None:
            return []
        row = self._attention_row()
        values = {
            "net": format_money(row.net_sum, self.currency),
            "total": format_money(self.total, self.currency),
            "status": PaymentStatus(self.status).label,
            "disputed": format_money(self.disputed_amount, self.currency),
        }
        return [
            gettext(rule.message) % values
            for rule in ATTENTION_RULES
            if getattr(row, f"attention_{rule.code}")
        ]

    def ledger_mismatch_reasons(self) -> list[str]:
        """
        Say where the running totals disagree with the ledger, in words for
        staff (empty when they agree).

        The attention rules read the running totals and cannot see totals that
        are themselves wrong; this compares them with the ledger's sums, in one
        aggregate query for this order.
        """
        if self.pk is None:
            return []
        row = (
            type(self)
            .objects.filter(pk=self.pk)
            .with_ledger_sums()
            .values(
                "captured_amount",
                "refunded_amount",
                "disputed_amount",
                "ledger_captured",
                "ledger_refunded",
                "ledger_disputed",
            )
            .get()
        )
        reasons = []
        checks = [
            (
                "captured_amount",
                "ledger_captured",
                _(
                    "The captured total (%(total)s) is not the sum of the ledger's captures "
                    "(%(ledger)s)."
                ),
            ),
            (
                "refunded_amount",
                "ledger_refunded",
                _(
                    "The refunded total (%(total)s) is not the sum of the ledger's refunds "
                    "(%(ledger)s)."
                ),
            ),
            (
                "disputed_amount",
                "ledger_disputed",
                _(
                    "The disputed total (%(total)s) is not the sum of the ledger's disputes "
                    "(%(ledger)s)."
                ),
            ),
        ]
        for total, ledger, message in checks:
            if money(row[total]) != money(row[ledger]):
                reasons.append(
                    gettext(message)
                    % {
                        "total": format_money(row[total], self.currency),
                        "ledger": format_money(row[ledger], self.currency),
                    }
                )
        return reasons

    # -- transitions (gateway facts) ----------------------------------------

    # A decline is not final: a customer whose card was declined may retry and
    # pay, so an authorization or a capture applies to a declined order too.

    @transition(
        field=status,
        source=[PaymentStatus.AWAITING_PAYMENT, PaymentStatus.DECLINED],
        target=PaymentStatus.AUTHORIZED,
    )
    def authorize(self) -> None:
        """The gateway holds the money."""

    @transition(
        field=status,
        source=[
            PaymentStatus.AWAITING_PAYMENT,
            PaymentStatus.AUTHORIZED,
            PaymentStatus.PARTIALLY_PAID,
            PaymentStatus.DECLINED,
        ],
        target=RETURN_VALUE(
            PaymentStatus.PAID, PaymentStatus.PARTIALLY_PAID, PaymentStatus.REFUNDED
        ),
    )
    def capture(self, *, net_paid: Decimal) -> str:
        """Money was captured; the status follows the net paid after it."""
        return self.status_for_net_paid(net_paid)

    @transition(
        field=status,
        source=[PaymentStatus.AWAITING_PAYMENT, PaymentStatus.AUTHORIZED],
        target=PaymentStatus.DECLINED,
    )
    def decline(self) -> None:
        """The gateway refused the payment."""

    @transition(field=status, source=PaymentStatus.AUTHORIZED, target=PaymentStatus.CANCELLED)
    def void(self) -> None:
        """The authorization was released without a capture."""

    @transition(
        field=status,
        source=[PaymentStatus.AWAITING_PAYMENT, PaymentStatus.DECLINED],
        target=PaymentStatus.CANCELLED,
    )
    def cancel_checkout(self) -> None:
        """The gateway cancelled a payment that was never authorized or captured."""

    @transition(
        field=status,
        source=[PaymentStatus.PAID, PaymentStatus.PARTIALLY_PAID],
        target=RETURN_VALUE(
            PaymentStatus.PAID, PaymentStatus.PARTIALLY_PAID, PaymentStatus.REFUNDED
        ),
    )
    def refund(self, *, net_paid: Decimal) -> str:
        """Money went back; the status follows the net paid after it."""
        return self.status_for_net_paid(net_paid)

    @transition(
        field=status,
        source=[PaymentStatus.REFUNDED, PaymentStatus.PARTIALLY_PAID, PaymentStatus.PAID],
        target=RETURN_VALUE(
            PaymentStatus.PAID, PaymentStatus.PARTIALLY_PAID, PaymentStatus.REFUNDED
        ),
    )
    def reverse_refund(self, *, net_paid: Decimal) -> str:
        """A refund failed and its money came back; the status follows the net paid."""
        return self.status_for_net_paid(net_paid)

    # -- manual override -----------------------------------------------------

    @transition(
        field=status,
        source="*",
        target=RETURN_VALUE(*PaymentStatus.values),
        permission=OVERRIDE_PERMISSION,
        custom={"admin": False},
    )
    def override(self, new_status: str) -> str:
        """Set any status by hand. Policy and permission live in the service."""
        return new_status
