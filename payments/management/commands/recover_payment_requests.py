"""Finish payment requests left pending by a process that stopped half-way."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from orderflow.audit import Channel, audit_context
from orderflow.cli import parse_age
from orderflow.money import format_money
from payments.models import RequestStatus
from payments.services import recover_payment_requests


class Command(BaseCommand):
    help = (
        "Finish capture, void and refund requests still pending after a while: apply the "
        "gateway's stored answer, or ask the gateway again with the same idempotency key. "
        "Fit for cron; exits non-zero while any request stays unresolved."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--older-than",
            default="5m",
            help="Only requests pending for longer than this (default 5m; e.g. 30m, 2h).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be done; change nothing."
        )

    def handle(self, *args, **options) -> None:
        older_than = parse_age(options["older_than"])
        with audit_context(channel=Channel.COMMAND, user=None):
            summary = recover_payment_requests(older_than=older_than, dry_run=options["dry_run"])
        if not summary.requests:
            self.stdout.write("No payment requests to recover.")
            return
        for item in summary.requests:
            request = item.request
            self.stdout.write(
                f"payment request {request.pk} ({request.action} "
                f"{format_money(request.amount, request.currency)}, order {request.order.number}): "
                f"{item.done} -> {item.status}"
            )
        if summary.dry_run:
            self.stdout.write(f"{len(summary.requests)} request(s) would be recovered (dry run).")
            return
        self.stdout.write(
            f"Recovered {len(summary.requests)} request(s): "
            f"{summary.count(RequestStatus.SUCCEEDED)} succeeded, "
            f"{summary.count(RequestStatus.FAILED)} failed, "
            f"{len(summary.unresolved)} still pending."
        )
        if summary.unresolved:
            raise CommandError(
                f"{len(summary.unresolved)} payment request(s) are still pending; "
                "see their detail in the admin (Payment requests)."
            )
