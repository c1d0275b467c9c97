"""Anticipated payment errors: their messages are written for staff to read."""

from orders.exceptions import OrderError


class PaymentError(OrderError):
    """Base of the payment errors a user may see."""


class InvalidPaymentEvent(PaymentError):
    """A money fact is malformed or does not fit the order (wrong currency...)."""


class GatewayError(PaymentError):
    """The gateway refused or failed a request."""
