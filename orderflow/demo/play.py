"""
Playing the demo plans through the real services, step by step.

Each step goes through the service its channel would call in real life
(the storefront's ``place_order``, a gateway's callback into the inbox,
staff recording a cheque or overriding a status, the nightly job), inside
that channel's audit context, and is dated along the order's story.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from orderflow.audit import Channel, audit_context
from orderflow.demo import DemoDataError
from orderflow.demo.dates import (
    CLEAN_UP,
    GATEWAY_ANSWER,
    IN_THE_POST,
    REDELIVERY,
    RETURNS,
    SAME_DAY,
    SHIPPING,
    StoryClock,
    as_of,
)
from orderflow.demo.plan import OrderPlan, S
from orders.models import Order
from orders.services import override_status, place_order
from payments.gateways import CheckoutOutcome, FactKind, MoneyFact, PaymentResult
from payments.gateways.hmac import SIGNATURE_HEADER, build_body, sign
from payments.inbox import receive_callback
from payments.models import CaptureMode, PaymentMethod
from payments.services import (
    apply_gateway_event,
    record_offline_payment,
    record_offline_refund,
)


def gateway_reference(plan: OrderPlan, step: int = 0) -> str:
    """
    Return the gateway's id for one money movement of a demo order.

    Step 0 is the checkout's payment: its authorization, capture, void or
    decline share one id, as a Stripe PaymentIntent does. Later steps
    (refunds) each have their own id.
    """
    if plan.method == "stripe":
        return f"pi_{plan.token}" if step == 0 else f"re_{plan.token}{step}"
    return f"tx_{plan.token}" if step == 0 else f"tx_{plan.token}_{step}"


class DemoOrders:
    """Play the scenarios through the services, each step in its channel and at its time."""

    def __init__(self, *, methods: dict[str, PaymentMethod], staff_user: Any, now: datetime):
        self.methods = methods
        self.staff_user = staff_user
        self.now = now
        self.clock = StoryClock(now, now=now)  # each order's own, from play()

    def play(self, plan: OrderPlan) -> Order:
        self.clock = StoryClock(self.now - plan.age, now=self.now)
        return getattr(self, plan.scenario.key)(plan)

    # -- channels --------------------------------------------------------------

    def place(self, plan: OrderPlan, initial: PaymentResult | None = None) -> Order:
        placed_at = self.clock.placed_at
        with as_of(placed_at), audit_context(channel=Channel.STOREFRONT, user=None):
            return place_order(
                number=plan.number,
                total=plan.total,
                currency=plan.currency,
                payment_method=self.methods[plan.method],
                customer_email=plan.customer_email,
                initial=initial,
                placed_at=placed_at,
            )

    def checkout(self, plan: OrderPlan, outcome: str, amount: Decimal | None = None) -> Order:
        result = PaymentResult(outcome, amount=amount, reference=gateway_reference(plan))
        return self.place(plan, result)

    def callback(
        self,
        order: Order,
        plan: OrderPlan,
        kind: str,
        amount: Decimal | None = None,
        *,
        after: timedelta,
        step: int = 0,
    ) -> Order:
        method = self.methods[plan.method]
        reference = gateway_reference(plan, step)
        when = self.clock.after(after)
        with as_of(when), audit_context(channel=Channel.GATEWAY, user=None, reason=""):
            if method.gateway != "hmac":
                fact = MoneyFact(kind, reference, amount)
                return apply_gateway_event(order, fact).order
            # The built-in gateway's callbacks go through the real inbox, signed
            # as the gateway would sign them, so the demo shows stored events.
            body = build_body(
                event_id=f"evt_{plan.token}_{step}_{kind}",
                event_type=f"payment.{kind}",
                order=order.number,
                currency=order.currency,
                amount=str(amount) if amount is not None else None,
                transaction=reference,
                created=int(when.timestamp()),
            )
            answer = receive_callback(
                method_code=method.code,
                body=body,
                headers={SIGNATURE_HEADER: sign(body, method.webhook_secret)},
            )
            if answer.http_status != 200:
                raise DemoDataError(f"Demo callback for {order.number} failed: {answer.body}")
            return Order.objects.get(pk=order.pk)

    def offline_reference(self, plan: OrderPlan, suffix: str = "") -> str:
        """The cheque or transfer number: recording it twice counts it once."""
        prefix = "CHK" if plan.method == "check" else "WIRE"
        return f"{prefix}-{plan.number}{suffix}"

    def staff_records_payment(
        self, order: Order, plan: OrderPlan, amount: Decimal, reason: str, *, after: timedelta
    ) -> Order:
        with as_of(self.clock.after(after)), audit_context(channel=Channel.ADMIN):
            return record_offline_payment(
                order,
                amount=amount,
                reference=self.offline_reference(plan),
                user=self.staff_user,
                reason=reason,
            ).order

    def staff_records_refund(
        self, order: Order, plan: OrderPlan, amount: Decimal, reason: str, *, after: timedelta
    ) -> Order:
        with as_of(self.clock.after(after)), audit_context(channel=Channel.ADMIN):
            return record_offline_refund(
                order,
                amount=amount,
                reference=self.offline_reference(plan, "-R1"),
                user=self.staff_user,
                reason=reason,
            ).order

    def staff_override(
        self,
        order: Order,
        status: str,
        reason: str,
        *,
        after: timedelta,
        allow_discouraged: bool = False,
    ) -> Order:
        when = self.clock.after(after)
        with as_of(when), audit_context(channel=Channel.ADMIN, user=self.staff_user):
            return override_status(
                order,
                status,
                user=self.staff_user,
                reason=reason,
                allow_discouraged=allow_discouraged,
            )

    def job_override(self, order: Order, status: str, reason: str, *, after: timedelta) -> Order:
        when = self.clock.after(after)
        with as_of(when), audit_context(channel=Channel.COMMAND, user=None):
            return override_status(order, status, user=None, reason=reason)

    def paid_in_full(self, plan: OrderPlan) -> Order:
        """Check out and capture the total the way the method works."""
        if self.methods[plan.method].capture_mode == CaptureMode.SALE:
            return self.checkout(plan, CheckoutOutcome.CAPTURED, plan.total)
        order = self.checkout(plan, CheckoutOutcome.AUTHORIZED)
        return self.callback(order, plan, FactKind.CAPTURED, plan.total, after=SHIPPING)

    # -- scenarios (one per Scenario.key) ----------------------------------------

    def offline_awaiting(self, plan: OrderPlan) -> Order:
        return self.place(plan)

    def offline_paid(self, plan: OrderPlan) -> Order:
        reason = (
            "Cheque received and banked."
            if plan.method == "check"
            else "Wire transfer arrived in full."
        )
        return self.staff_records_payment(
            self.place(plan), plan, plan.total, reason, after=IN_THE_POST
        )

    def offline_part_paid(self, plan: OrderPlan) -> Order:
        reason = "Wire transfer covers part of the total; the customer will send the rest."
        return self.staff_records_payment(
            self.place(plan), plan, plan.part, reason, after=IN_THE_POST
        )

    def offline_cancelled(self, plan: OrderPlan) -> Order:
        reason = "Customer cancelled by phone before paying."
        return self.staff_override(self.place(plan), S.CANCELLED, reason, after=SAME_DAY)

    def offline_refunded(self, plan: OrderPlan) -> Order:
        # No reason given: the service's own says what was received.
        order = self.staff_records_payment(
            self.place(plan), plan, plan.total, "", after=IN_THE_POST
        )
        reason = (
            "Goods returned unopened; refund cheque sent."
            if plan.method == "check"
            else "Goods returned unopened; refund wired back."
        )
        return self.staff_records_refund(order, plan, plan.total, reason, after=RETURNS)

    def checkout_pending(self, plan: OrderPlan) -> Order:
        return self.checkout(plan, CheckoutOutcome.PENDING)

    def abandoned_cancelled(self, plan: OrderPlan) -> Order:
        order = self.checkout(plan, CheckoutOutcome.PENDING)
        reason = "Checkout abandoned: no answer from the gateway for 7 days (nightly clean-up)."
        return self.job_override(order, S.CANCELLED, reason, after=CLEAN_UP)

    def sale_paid(self, plan: OrderPlan) -> Order:
        return self.checkout(plan, CheckoutOutcome.CAPTURED, plan.total)

    def sale_part_paid(self, plan: OrderPlan) -> Order:
        return self.checkout(plan, CheckoutOutcome.CAPTURED, plan.part)

    def sale_declined(self, plan: OrderPlan) -> Order:
        return self.checkout(plan, CheckoutOutcome.DECLINED)

    def pending_declined(self, plan: OrderPlan) -> Order:
        order = self.checkout(plan, CheckoutOutcome.PENDING)
        return self.callback(order, plan, FactKind.DECLINED, after=GATEWAY_ANSWER)

    def auth_held(self, plan: OrderPlan) -> Order:
        return self.checkout(plan, CheckoutOutcome.AUTHORIZED)

    def pending_authorized(self, plan: OrderPlan) -> Order:
        order = self.checkout(plan, CheckoutOutcome.PENDING)
        return self.callback(order, plan, FactKind.AUTHORIZED, after=GATEWAY_ANSWER)

    def auth_captured(self, plan: OrderPlan) -> Order:
        return self.paid_in_full(plan)

    def auth_part_captured(self, plan: OrderPlan) -> Order:
        order = self.checkout(plan, CheckoutOutcome.AUTHORIZED)
        return self.callback(order, plan, FactKind.CAPTURED, plan.part, after=SHIPPING)

    def auth_voided(self, plan: OrderPlan) -> Order:
        order = self.checkout(plan, CheckoutOutcome.AUTHORIZED)
        return self.callback(order, plan, FactKind.VOIDED, after=SAME_DAY)

    def paid_refunded(self, plan: OrderPlan) -> Order:
        order = self.paid_in_full(plan)
        return self.callback(order, plan, FactKind.REFUNDED, plan.total, after=RETURNS, step=1)

    def paid_part_refunded(self, plan: OrderPlan) -> Order:
        order = self.paid_in_full(plan)
        return self.callback(order, plan, FactKind.REFUNDED, plan.part, after=RETURNS, step=1)

    def refunded_in_two(self, plan: OrderPlan) -> Order:
        order = self.paid_in_full(plan)
        order = self.callback(order, plan, FactKind.REFUNDED, plan.part, after=RETURNS, step=1)
        rest = plan.total - plan.part
        return self.callback(order, plan, FactKind.REFUNDED, rest, after=RETURNS, step=2)

    def duplicate_callback(self, plan: OrderPlan) -> Order:
        # The gateway confirms by callback the capture already answered at
        # checkout: same reference, so no second effect.
        order = self.checkout(plan, CheckoutOutcome.CAPTURED, plan.total)
        return self.callback(order, plan, FactKind.CAPTURED, plan.total, after=REDELIVERY)

    def cancelled_money_kept(self, plan: OrderPlan) -> Order:
        order = self.paid_in_full(plan)
        reason = "Customer cancelled by phone; refund to be issued from the gateway dashboard."
        return self.staff_override(
            order, S.CANCELLED, reason, after=SAME_DAY, allow_discouraged=True
        )

    def refund_beyond_balance(self, plan: OrderPlan) -> Order:
        order = self.paid_in_full(plan)
        order = self.callback(order, plan, FactKind.REFUNDED, plan.part, after=RETURNS, step=1)
        # A full refund reported after the partial one: more than is left.
        return self.callback(order, plan, FactKind.REFUNDED, plan.total, after=SAME_DAY, step=2)

    def offline_marked_paid(self, plan: OrderPlan) -> Order:
        reason = "Customer says the cheque is in the post; shipment released early."
        return self.staff_override(self.place(plan), S.PAID, reason, after=SAME_DAY)

    def capture_after_void(self, plan: OrderPlan) -> Order:
        order = self.checkout(plan, CheckoutOutcome.AUTHORIZED)
        order = self.callback(order, plan, FactKind.VOIDED, after=SAME_DAY)
        # The gateway reports a capture that raced the void: the money is
        # recorded, the status stays, the event is ignored.
        return self.callback(order, plan, FactKind.CAPTURED, plan.total, after=GATEWAY_ANSWER)
