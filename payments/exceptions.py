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


class GatewayNoAnswer(GatewayError):
    """
    The gateway did not answer (network failure, timeout): it may have acted.

    Unlike a refusal, this moves no request to failed: the request stays
    pending and is asked again with the same idempotency key.
    """


class RequestAlreadySubmitted(PaymentError):
    """The form's token was already used for this request; ``request`` is that request."""

    def __init__(self, message: str, *, request: PaymentRequest) -> None:
        super().__init__(message)
        self.request = request
