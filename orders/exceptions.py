"""Anticipated order errors: their messages are written for staff to read."""


class OrderError(Exception):
    """Base of the errors a user may see; anything else is a bug."""


class InvalidOrder(OrderError):
    """The data to place an order is wrong (the message names the problem)."""


class DiscouragedTransition(OrderError):
    """The status change is discouraged and was not confirmed."""

    def __init__(self, old: str, new: str, reason: str) -> None:
        super().__init__(reason)
        self.old = old
        self.new = new
        self.reason = reason


class AlreadyInStatus(OrderError):
    """The order already has the requested status: nothing to change."""


class ConcurrentChange(OrderError):
    """Someone else changed the order at the same moment; try again."""
