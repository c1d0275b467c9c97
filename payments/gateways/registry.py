"""Gateway adapters by ``PaymentMethod.gateway`` key."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from payments.gateways.base import Gateway

BUILT_IN = {
    "hmac": "payments.gateways.hmac.HmacGateway",
    "stripe": "payments.gateways.stripe.StripeGateway",
}


def gateway_paths() -> dict[str, str]:
    """Built-in adapters plus ``ORDERFLOW_GATEWAYS`` ({key: dotted path})."""
    return {**BUILT_IN, **getattr(settings, "ORDERFLOW_GATEWAYS", {})}


@cache
def _load(path: str) -> Gateway:
    return import_string(path)()


def get_gateway(key: str) -> Gateway | None:
    """Return the adapter for ``key``, or None when no adapter has that key."""
    path = gateway_paths().get(key)
    return _load(path) if path else None
