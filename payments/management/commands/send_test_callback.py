"""Sign and send a test callback for an hmac payment method (demo and debugging)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit
from uuid import uuid4

from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from orders.models import Order
from payments.gateways.hmac import EVENT_TYPES, MONEY_TYPES, SIGNATURE_HEADER, build_body, sign
from payments.inbox import receive_callback
from payments.models import PaymentMethod


class Command(BaseCommand):
    help = (
        "Sign a callback with the method's webhook secret, as the gateway would, and post it "
        "to a running server (--url) or apply it in-process. Built-in hmac gateway only."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--method", required=True, help="Payment method code (hmac gateway).")
        parser.add_argument("--order", required=True, help="Order number.")
        parser.add_argument("--type", required=True, choices=sorted(EVENT_TYPES))
        parser.add_argument("--amount", help="Amount, e.g. 10.00 (captures and refunds).")
        parser.add_argument("--currency", help="Currency (default: the order's).")
        parser.add_argument(
            "--transaction", help="The gateway's id for this movement (default: a new one)."
        )
        parser.add_argument("--event-id", help="Event id (default: a new one).")
        parser.add_argument(
            "--url",
            help="Base URL of a running orderflow, e.g. http://127.0.0.1:8000 "
            "(default: apply in-process).",
        )

    def handle(self, *args, **options) -> None:
        try:
            method = PaymentMethod.objects.get(code=options["method"])
        except PaymentMethod.DoesNotExist:
            raise CommandError(f"No payment method {options['method']!r}.") from None
        if method.gateway != "hmac":
            raise CommandError(
                f"{method.code} uses the {method.gateway or 'offline'} gateway; "
                "send_test_callback signs callbacks for the built-in hmac gateway only."
            )
        order = Order.objects.filter(number=options["order"]).first()
        currency = options["currency"] or (order.currency if order else "")
        if not currency:
            raise CommandError(f"No order {options['order']!r}: give --currency to send anyway.")
        amount = options["amount"]
        if options["type"] in MONEY_TYPES and not amount:
            if order is None:
                raise CommandError(f"{options['type']} needs --amount.")
            amount = str(
                order.total - order.captured_amount
                if options["type"] == "payment.captured"
                else order.net_paid_amount
            )
        body = build_body(
            event_id=options["event_id"] or f"evt_{uuid4().hex[:16]}",
            event_type=options["type"],
            order=options["order"],
            currency=currency,
            amount=amount,
            transaction=options["transaction"] or f"tx_{uuid4().hex[:16]}",
        )
        header = sign(body, method.webhook_secret, int(time.time()))
        path = reverse("payments:callback", args=[method.code])

        if options["url"]:
            status, answer = self._post(options["url"], path, body, header)
        else:
            response = receive_callback(
                method_code=method.code, body=body, headers={SIGNATURE_HEADER: header}
            )
            status, answer = response.http_status, response.body
        self.stdout.write(f"POST {path}\n{body.decode()}")
        style = self.style.SUCCESS if status == 200 else self.style.WARNING
        self.stdout.write(style(f"HTTP {status} {json.dumps(answer)}"))
        if status >= 500:
            raise CommandError("The callback failed; it is stored and can be replayed.")

    def _post(self, base: str, path: str, body: bytes, header: str) -> tuple[int, dict]:
        if urlsplit(base).scheme not in ("http", "https"):
            raise CommandError("--url must start with http:// or https://")
        request = urllib.request.Request(  # noqa: S310 (scheme checked above)
            base.rstrip("/") + path,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: header},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310
                return reply.status, json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except urllib.error.URLError as exc:
            raise CommandError(f"Could not reach {base}: {exc.reason}") from None
