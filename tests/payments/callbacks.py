"""Helpers to send signed hmac callbacks through the real view."""

from __future__ import annotations

import itertools
import time

from django.test import Client
from django.urls import reverse

from payments.gateways.hmac import SIGNATURE_HEADER, build_body, sign

SECRET = "whsec_test_only_secret"
_ids = itertools.count(1)


def body_for(
    order_number: str,
    event_type: str,
    *,
    amount=None,
    transaction=None,
    event_id=None,
    currency="USD",
) -> bytes:
    n = next(_ids)
    return build_body(
        event_id=event_id or f"evt_{n}",
        event_type=event_type,
        order=order_number,
        currency=currency,
        amount=amount,
        transaction=transaction if transaction is not None else f"tx_cb_{n}",
    )


def post(
    client: Client,
    body: bytes,
    *,
    method: str = "testpay",
    secret: str | list[str] = SECRET,
    timestamp: int | None = None,
    header: str | None = None,
):
    signature = header if header is not None else sign(body, secret, timestamp or int(time.time()))
    headers = {SIGNATURE_HEADER: signature} if signature else {}
    return client.post(
        reverse("payments:callback", args=[method]),
        body,
        content_type="application/json",
        headers=headers,
    )
