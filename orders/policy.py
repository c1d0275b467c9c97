"""
Discouraged status changes: allowed by override, but only when confirmed.

The built-in list below can be extended (or an entry replaced) with the
``ORDERFLOW_DISCOURAGED_TRANSITIONS`` setting, a dict of
``{(old_status, new_status): "why, in words for staff"}``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from orders.models import PaymentStatus

_USE_CANCELLED = _(
    "No money was captured for this order, so there is nothing to refund: "
    "use Cancelled instead of Refunded."
)

BUILT_IN: dict[tuple[str, str], str] = {
    (PaymentStatus.PAID, PaymentStatus.CANCELLED): _(
        "Money was captured for this order: use Refunded instead of Cancelled, "
        "so the records show the money going back to the customer."
    ),
    (PaymentStatus.AUTHORIZED, PaymentStatus.REFUNDED): _USE_CANCELLED,
    (PaymentStatus.AWAITING_PAYMENT, PaymentStatus.REFUNDED): _USE_CANCELLED,
}


def discouraged_transitions() -> dict[tuple[str, str], str]:
    """Return the built-in discouraged changes merged with the setting."""
    extra = getattr(settings, "ORDERFLOW_DISCOURAGED_TRANSITIONS", {}) or {}
    rules = dict(BUILT_IN)
    for key, why in extra.items():
        if (
            not isinstance(key, tuple)
            or len(key) != 2
            or any(status not in PaymentStatus.values for status in key)
        ):
            raise ImproperlyConfigured(
                "ORDERFLOW_DISCOURAGED_TRANSITIONS keys must be (old, new) pairs of "
                f"payment statuses ({', '.join(PaymentStatus.values)}); got {key!r}."
            )
        if not str(why).strip():
            raise ImproperlyConfigured(
                f"ORDERFLOW_DISCOURAGED_TRANSITIONS[{key!r}] needs a reason for staff."
            )
        rules[(str(key[0]), str(key[1]))] = why
    return rules


def discouraged_reason(old: str, new: str) -> str | None:
    """Return why changing ``old`` to ``new`` is discouraged, or None if it is not."""
    why = discouraged_transitions().get((str(old), str(new)))
    return str(why) if why is not None else None
