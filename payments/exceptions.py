"""Anticipated payment errors: their messages are written for staff to read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orders.exceptions import OrderError

if TYPE_CHECKING:
    from payments.models import PaymentRequest


class PaymentError(OrderError):
    """Base of the payment errors a user may see."""


class InvalidPaymentEvent(PaymentError):
    """A money fact is malformed or does not fit the order (wrong currency...)."""


class GatewayError(PaymentError):
    """The gateway refused or failed a request."""


class RequestAlreadySubmitted(PaymentError):
    """The form's token was already used for this request; ``request`` is that request."""

    def __init__(self, message: str, *, request: PaymentRequest) -> None:
        super().__init__(message)
        self.request = request
