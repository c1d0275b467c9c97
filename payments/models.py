"""
Payment methods, the ledger of money movements, the gateway inbox and the
requests staff send to gateways.

The ledger (``PaymentTransaction``) is the truth about money: one row per
movement, never edited, never deleted. ``(payment_method, kind, reference)``
is unique in the database, so a capture or refund reported twice, by any
channel, is counted once.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from orderflow.audit import AuditedHistoricalModel
from orderflow.money import MONEY_FIELD, format_money


class PaymentMethodKind(models.TextChoices):
    OFFLINE = "offline", _("Offline")
    """Paid outside the system (cheque, wire); staff record the money."""
    ONLINE = "online", _("Online")
    """Paid through a gateway that reports back with callbacks."""


class CaptureMode(models.TextChoices):
    SALE = "sale", _("Sale (authorize and capture at once)")
    """The gateway captures at checkout."""
    AUTH = "auth", _("Authorize only (capture later)")
    """The gateway only holds the money at checkout."""


class PaymentMethod(models.Model):
    code = models.SlugField(_("code"), max_length=50, unique=True)
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=10, choices=PaymentMethodKind.choices)
    gateway = models.CharField(
        _("gateway"),
        max_length=30,
        blank=True,
        help_text=_("Adapter key, e.g. hmac or stripe. Empty for offline methods."),
    )
    capture_mode = models.CharField(
        _("capture mode"), max_length=10, choices=CaptureMode.choices, default=CaptureMode.SALE
    )
    supports_refunds = models.BooleanField(_("supports refunds"), default=False)
    supports_partial_refunds = models.BooleanField(_("supports partial refunds"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    webhook_secret = models.CharField(
        _("webhook secret"),
        max_length=255,
        blank=True,
        help_text=_("Used to verify callbacks. Stored, never displayed."),
    )
    api_key = models.CharField(
        _("API key"),
        max_length=255,
        blank=True,
        help_text=_(
            "The gateway's secret API key for captures, voids and refunds "
            "(Stripe: sk_...). Stored, never displayed."
        ),
    )
    signature_failures = models.PositiveBigIntegerField(
        _("rejected callbacks"),
        default=0,
        editable=False,
        help_text=_("Callbacks refused for a missing, wrong or stale signature."),
    )
    last_signature_failure_at = models.DateTimeField(
        _("last rejected callback"), null=True, blank=True, editable=False
    )

    # Secrets never reach the history tables; the failure counter is noise there.
    # A method's history is read by its id only: no index on the code there.
    history = HistoricalRecords(
        bases=[AuditedHistoricalModel],
        no_db_index=["code"],
        excluded_fields=[
            "webhook_secret",
            "api_key",
            "signature_failures",
            "last_signature_failure_at",
        ],
    )

    class Meta:
        verbose_name = _("payment method")
        verbose_name_plural = _("payment methods")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind=PaymentMethodKind.OFFLINE, gateway=""))
                | (Q(kind=PaymentMethodKind.ONLINE) & ~Q(gateway="")),
                name="payment_method_gateway_matches_kind",
            ),
            models.CheckConstraint(
                condition=Q(supports_partial_refunds=False) | Q(supports_refunds=True),
                name="payment_method_partial_refunds_need_refunds",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        # Never let the secret reach a log line or a traceback.
        return f"<PaymentMethod {self.code!r}>"

    @property
    def is_online(self) -> bool:
        return self.kind == PaymentMethodKind.ONLINE


class TransactionKind(models.TextChoices):
    AUTHORIZATION = "authorization", _("Authorization")
    """The gateway put a hold on the customer's money."""
    CAPTURE = "capture", _("Capture")
    """Money taken."""
    REFUND = "refund", _("Refund")
    """Money given back."""
    VOID = "void", _("Void")
    """A hold released without taking the money."""
    DECLINE = "decline", _("Decline")
    """The gateway refused a payment."""
    REFUND_REVERSAL = "refund_reversal", _("Refund reversal")
    """A refund that failed: its money came back to the store."""
    DISPUTE = "dispute", _("Dispute")
    """Money the gateway withdrew for a customer's dispute."""
    DISPUTE_REVERSAL = "dispute_reversal", _("Dispute reversal")
    """Disputed money the gateway gave back (the dispute was won)."""


MONEY_MOVING_KINDS = (
    TransactionKind.CAPTURE,
    TransactionKind.REFUND,
    TransactionKind.REFUND_REVERSAL,
    TransactionKind.DISPUTE,
    TransactionKind.DISPUTE_REVERSAL,
)


class LedgerIsAppendOnly(Exception):
    """Ledger rows are facts; they are never changed or removed."""


class PaymentTransaction(models.Model):
    # No single-column index on either foreign key: ledger_order_kind leads
    # with the order, the unique (method, reference, kind) with the method.
    order = models.ForeignKey(
        "orders.Order",
        on_delete=models.PROTECT,
        related_name="transactions",
        verbose_name=_("order"),
        db_index=False,
    )
    payment_method = models.ForeignKey(
        PaymentMethod,
        on_delete=models.PROTECT,
        related_name="transactions",
        verbose_name=_("payment method"),
        db_index=False,
    )
    kind = models.CharField(_("kind"), max_length=20, choices=TransactionKind.choices)
    amount = models.DecimalField(_("amount"), **MONEY_FIELD)
    currency = models.CharField(_("currency"), max_length=3)
    reference = models.CharField(
        _("reference"), max_length=255, help_text=_("The gateway's id for this movement.")
    )
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True, db_index=True)
    # Nothing looks ledger rows up by user or by event, so neither is indexed
    # (deleting a user then reads the ledger once to check it recorded nothing).
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("recorded by"),
        db_index=False,
    )
    event = models.ForeignKey(
        "payments.GatewayEvent",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="transactions",
        verbose_name=_("gateway event"),
        db_index=False,
    )
    channel = models.CharField(_("channel"), max_length=20, blank=True)

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger")
        ordering = ["-created_at", "-id"]
        constraints = [
            # The reference before the kind: the same index then also finds
            # the order of a reference of any kind (a callback without an
            # order number, payments.inbox._find_order).
            models.UniqueConstraint(
                fields=["payment_method", "reference", "kind"],
                name="ledger_reference_once_per_method_and_kind",
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="ledger_amount_not_negative"),
            models.CheckConstraint(
                condition=Q(amount__gt=0) | ~Q(kind__in=MONEY_MOVING_KINDS),
                name="ledger_money_movement_positive",
            ),
            models.CheckConstraint(condition=~Q(reference=""), name="ledger_reference_required"),
        ]
        indexes = [
            # An order's ledger (its page, the availability sums) and the
            # attention rules' "has an authorization / a void".
            models.Index(fields=["order", "kind"], name="ledger_order_kind"),
        ]
        permissions = [
            # One permission for both: capturing and releasing an authorization
            # are the same decision about money the gateway holds.
            ("capture_payment", _("Can capture and void payments through the gateway")),
            ("refund_payment", _("Can refund payments through the gateway")),
            ("record_offline_payment", _("Can record offline payments and refunds")),
        ]

    def __str__(self) -> str:
        amount = format_money(self.amount, self.currency)
        return f"{self.get_kind_display()} {amount} ({self.reference})"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise LedgerIsAppendOnly(_("Ledger entries cannot be changed."))
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerIsAppendOnly(_("Ledger entries cannot be deleted."))


class EventOutcome(models.TextChoices):
    RECEIVED = "received", _("Received, not processed yet")
    """Stored; processing has not finished."""
    APPLIED = "applied", _("Applied")
    """Changed the ledger and/or the status."""
    DUPLICATE = "duplicate", _("Duplicate")
    """Already recorded; no second effect."""
    IGNORED = "ignored", _("Ignored")
    """Not allowed from the order's status; needs attention."""
    REJECTED = "rejected", _("Rejected")
    """Malformed or inconsistent with the order."""
    UNMATCHED = "unmatched", _("Unmatched")
    """No such order (yet); can be replayed."""
    FAILED = "failed", _("Failed")
    """Processing crashed; can be replayed."""
    CONFLICT = "conflict", _("Conflict")
    """Contradicts what the same gateway reported before; needs staff to decide."""
    STALE = "stale", _("Stale")
    """Older than what the order already knows (an authorization after its
    capture); changes nothing and needs no attention."""


FINAL_OUTCOMES = frozenset(
    {
        EventOutcome.APPLIED,
        EventOutcome.DUPLICATE,
        EventOutcome.IGNORED,
        EventOutcome.REJECTED,
        EventOutcome.CONFLICT,
        EventOutcome.STALE,
    }
)
"""Outcomes that are never changed by processing again."""
REPLAYABLE_OUTCOMES = frozenset(
    {EventOutcome.FAILED, EventOutcome.UNMATCHED, EventOutcome.RECEIVED}
)
ACKNOWLEDGEABLE_OUTCOMES = frozenset({EventOutcome.IGNORED, EventOutcome.CONFLICT})
"""Outcomes that flag their order until staff acknowledge them."""
LOST_DISPUTE_KIND = "dispute_lost"
"""A lost dispute flags its order until staff acknowledge the event that reported it."""

STUCK_AFTER = timedelta(minutes=5)
"""An event still ``received`` after this long was left behind by a dead process."""


class GatewayEventQuerySet(models.QuerySet):
    def awaiting_acknowledgement(self, outcome: str) -> GatewayEventQuerySet:
        """Events with ``outcome`` that staff have not acknowledged yet."""
        return self.filter(outcome=outcome, acknowledged_at__isnull=True)

    def acknowledgeable(self) -> GatewayEventQuerySet:
        """Events that flag their order until staff acknowledge them."""
        return self.filter(
            Q(outcome__in=ACKNOWLEDGEABLE_OUTCOMES) | Q(kind=LOST_DISPUTE_KIND),
            acknowledged_at__isnull=True,
        )

    def ignored_facts(self) -> GatewayEventQuerySet:
        """
        Money facts that could not be applied and that staff have not acknowledged.

        An event that carried no fact at all (a type orderflow does not use,
        a refund that moved no money) is ignored too, but needs nobody.
        """
        return self.awaiting_acknowledgement(EventOutcome.IGNORED).exclude(kind="")

    def unacknowledged_dispute_losses(self) -> GatewayEventQuerySet:
        """Lost disputes that staff have not acknowledged yet."""
        return self.filter(kind=LOST_DISPUTE_KIND, acknowledged_at__isnull=True)

    def needing_attention(self) -> GatewayEventQuerySet:
        """Events that flag their order: each attention rule about events, in one place."""
        return (
            self.ignored_facts()
            | self.awaiting_acknowledgement(EventOutcome.CONFLICT)
            | self.unfinished()
            | self.unacknowledged_dispute_losses()
        )

    def unfinished(self) -> GatewayEventQuerySet:
        """Failed events, and events left ``received`` for longer than STUCK_AFTER."""
        return self.filter(
            Q(outcome=EventOutcome.FAILED)
            | Q(outcome=EventOutcome.RECEIVED, received_at__lt=Now() - STUCK_AFTER)
        )


class GatewayEvent(models.Model):
    """What a gateway told us, stored before it is processed."""

    # Served by the unique (payment method, event id), which leads with it.
    payment_method = models.ForeignKey(
        PaymentMethod,
        on_delete=models.PROTECT,
        related_name="events",
        verbose_name=_("payment method"),
        db_index=False,
    )
    event_id = models.CharField(_("event id"), max_length=255)
    event_type = models.CharField(_("event type"), max_length=100)
    raw_body = models.TextField(_("raw body"), blank=True)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True, db_index=True)
    outcome = models.CharField(
        _("outcome"),
        max_length=20,
        choices=EventOutcome.choices,
        default=EventOutcome.RECEIVED,
    )
    detail = models.TextField(_("detail"), blank=True)
    # Served by gateway_event_order_outcome, which leads with it.
    order = models.ForeignKey(
        "orders.Order",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="gateway_events",
        verbose_name=_("order"),
        db_index=False,
    )
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    kind = models.CharField(
        _("fact"),
        max_length=32,
        blank=True,
        help_text=_("What the event meant for the order (a payments.gateways.FactKind)."),
    )
    amount = models.DecimalField(_("amount"), null=True, blank=True, **MONEY_FIELD)
    reference = models.CharField(_("reference"), max_length=255, blank=True)
    deferred = models.BooleanField(
        _("waiting for a capture"),
        default=False,
        help_text=_(
            "A refund reported before enough money was captured; recorded as soon as a "
            "capture makes the balance sufficient."
        ),
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    acknowledged_at = models.DateTimeField(_("acknowledged at"), null=True, blank=True)
    # Nothing looks events up by who acknowledged them.
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("acknowledged by"),
        db_index=False,
    )

    objects = GatewayEventQuerySet.as_manager()

    class Meta:
        verbose_name = _("gateway event")
        verbose_name_plural = _("gateway events")
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["payment_method", "event_id"], name="gateway_event_once_per_method"
            ),
        ]
        indexes = [
            # An order's events (its page, the attention rules, the waiting facts);
            # with order IS NULL, the strays kept as not ours.
            models.Index(fields=["order", "outcome"], name="gateway_event_order_outcome"),
            # The list filtered by outcome, newest first, and the replay command.
            models.Index(
                fields=["outcome", "-received_at", "-id"], name="gateway_event_outcome_received"
            ),
        ]
        permissions = [
            ("replay_gatewayevent", _("Can replay failed or unmatched gateway events")),
            (
                "acknowledge_gatewayevent",
                _("Can acknowledge ignored or conflicting gateway events"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class RequestAction(models.TextChoices):
    """What staff asked a gateway to do."""

    CAPTURE = "capture", _("Capture")
    """Take authorized money."""
    VOID = "void", _("Void")
    """Release an authorization without taking the money."""
    REFUND = "refund", _("Refund")
    """Give captured money back."""


class RequestStatus(models.TextChoices):
    """Where a payment request stands."""

    PENDING = "pending", _("Pending")
    """Recorded; the gateway's answer has not been applied yet. The money may
    have moved: a pending request is resolved by asking again with its key."""
    SUCCEEDED = "succeeded", _("Succeeded")
    """The gateway did it; its answer was applied to the ledger."""
    FAILED = "failed", _("Failed")
    """The gateway refused; no money moved. Should the gateway's answer for
    the same key still arrive, it proves otherwise: the answer is applied and
    the request becomes succeeded."""


class RecordIsAppendOnly(Exception):
    """A payment request is created once and then only completed by its service."""


class PaymentRequestQuerySet(models.QuerySet):
    def unfinished(self) -> PaymentRequestQuerySet:
        """
        Requests whose money may still have to reach the ledger: pending ones,
        and failed ones whose gateway answer (proof that money moved) arrived
        after they were marked failed and is not applied yet.
        """
        return self.filter(
            Q(status=RequestStatus.PENDING)
            | Q(status=RequestStatus.FAILED, answered_at__isnull=False)
        )

    def unclaimed(self) -> PaymentRequestQuerySet:
        """Requests no process is working on: never claimed, or the claim has lapsed."""
        return self.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=timezone.now()))

    def stuck(self, older_than: timedelta) -> PaymentRequestQuerySet:
        """
        Unfinished requests recorded more than ``older_than`` ago that no
        process is working on: their process died or gave up.
        """
        return self.unfinished().unclaimed().filter(created_at__lte=timezone.now() - older_than)


class PaymentRequest(models.Model):
    """
    A capture, void or refund staff asked of a gateway, recorded before the call.

    The token comes from the form staff submitted: one intent, one token, one
    idempotency key, so the same click sent twice moves money once. The
    gateway's answer is stored before it is applied to the ledger, so a
    request interrupted at any point can be finished later without moving
    money again (``payments.services.recover_payment_requests``).
    """

    order = models.ForeignKey(
        "orders.Order",
        on_delete=models.PROTECT,
        related_name="payment_requests",
        verbose_name=_("order"),
    )
    payment_method = models.ForeignKey(
        PaymentMethod,
        on_delete=models.PROTECT,
        related_name="payment_requests",
        verbose_name=_("payment method"),
    )
    action = models.CharField(_("action"), max_length=10, choices=RequestAction.choices)
    amount = models.DecimalField(_("amount"), **MONEY_FIELD)
    currency = models.CharField(_("currency"), max_length=3)
    token = models.CharField(
        _("token"),
        max_length=64,
        help_text=_("Issued with the form: the same token never moves money twice."),
    )
    checkout_reference = models.CharField(
        _("checkout reference"),
        max_length=255,
        help_text=_("The gateway's id for the checkout the request was sent against."),
    )
    status = models.CharField(
        _("status"), max_length=10, choices=RequestStatus.choices, default=RequestStatus.PENDING
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("requested by"),
    )
    channel = models.CharField(_("channel"), max_length=20, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    created_at = models.DateTimeField(_("requested at"), auto_now_add=True)
    answer_reference = models.CharField(
        _("gateway reference"),
        max_length=255,
        blank=True,
        help_text=_("The gateway's id for the money movement, once it answered."),
    )
    answer_amount = models.DecimalField(_("amount answered"), null=True, blank=True, **MONEY_FIELD)
    answered_at = models.DateTimeField(_("answered at"), null=True, blank=True)
    detail = models.TextField(
        _("detail"), blank=True, help_text=_("Why it failed or is still pending.")
    )
    transaction = models.ForeignKey(
        PaymentTransaction,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="payment_requests",
        verbose_name=_("ledger entry"),
    )
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    claimed_until = models.DateTimeField(
        _("claimed until"),
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "A process is sending the request or applying its answer until then; "
            "recovery leaves it alone meanwhile."
        ),
    )

    objects = PaymentRequestQuerySet.as_manager()

    class Meta:
        verbose_name = _("payment request")
        verbose_name_plural = _("payment requests")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["token"], name="payment_request_token_once"),
            models.CheckConstraint(condition=~Q(token=""), name="payment_request_token_required"),
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="payment_request_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(action__in=RequestAction.values), name="payment_request_action_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=RequestStatus.values), name="payment_request_status_valid"
            ),
            # An answer is a money movement: it has the gateway's id and an amount.
            models.CheckConstraint(
                condition=Q(answered_at__isnull=True)
                | (~Q(answer_reference="") & Q(answer_amount__gt=0)),
                name="payment_request_answer_complete",
            ),
            models.CheckConstraint(
                condition=Q(status=RequestStatus.PENDING) | Q(completed_at__isnull=False),
                name="payment_request_completed_when_done",
            ),
            models.CheckConstraint(
                condition=~Q(status=RequestStatus.FAILED) | Q(transaction__isnull=True),
                name="payment_request_failed_moved_nothing",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="payment_request_status"),
            models.Index(fields=["order", "action", "status"], name="payment_request_order"),
            models.Index(fields=["action"], name="payment_request_action"),
        ]

    def __str__(self) -> str:
        amount = format_money(self.amount, self.currency)
        return f"{self.get_action_display()} {amount} (#{self.pk})"

    def save(self, *args, **kwargs) -> None:
        # Completing a request names what it changes; nothing else rewrites one.
        if not self._state.adding and not kwargs.get("update_fields"):
            raise RecordIsAppendOnly(
                _("A payment request is only updated field by field, by its service.")
            )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RecordIsAppendOnly(_("Payment requests cannot be deleted."))

    @property
    def idempotency_key(self) -> str:
        """The key sent with every call for this request: same request, same answer."""
        return f"orderflow:request:{self.token}"
