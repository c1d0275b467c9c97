"""Replay stored gateway events that failed or matched no order."""

from __future__ import annotations

from collections import Counter

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from orderflow.audit import Channel, audit_context
from orderflow.cli import parse_age
from payments.inbox import replay_gateway_event
from payments.models import REPLAYABLE_OUTCOMES, EventOutcome, GatewayEvent


class Command(BaseCommand):
    help = (
        "Replay stored gateway events whose processing failed or that matched no order. "
        "Each event is applied at most once, however often it is replayed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--outcome",
            action="append",
            choices=sorted(REPLAYABLE_OUTCOMES),
            help="Only events with this outcome (repeatable; default: failed, unmatched, and "
            "received but left unfinished for more than 5 minutes).",
        )
        parser.add_argument("--method", help="Only events of this payment method code.")
        parser.add_argument("--order", help="Only events for this order number.")
        parser.add_argument("--event-id", action="append", help="Only this event id (repeatable).")
        parser.add_argument(
            "--newer-than", help="Only events received within this age (e.g. 2h, 3d)."
        )
        parser.add_argument("--limit", type=int, help="Replay at most this many events.")
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be replayed; change nothing."
        )

    def handle(self, *args, **options) -> None:
        if options["outcome"]:
            events = GatewayEvent.objects.filter(outcome__in=options["outcome"])
        else:
            # Failed events and those a dead process left "received" (the rule
            # that flags their orders), and events that matched no order yet.
            events = GatewayEvent.objects.unfinished() | GatewayEvent.objects.filter(
                outcome=EventOutcome.UNMATCHED
            )
        events = events.select_related("payment_method")
        if options["method"]:
            events = events.filter(payment_method__code=options["method"])
        if options["order"]:
            # Unmatched events have no order yet: match the number in the body too.
            events = events.filter(order__number=options["order"]) | events.filter(
                order__isnull=True, raw_body__contains=f'"{options["order"]}"'
            )
        if options["event_id"]:
            events = events.filter(event_id__in=options["event_id"])
        if options["newer_than"]:
            events = events.filter(
                received_at__gte=timezone.now() - parse_age(options["newer_than"])
            )
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be 1 or more.")
        events = events.order_by("received_at", "id")
        if options["limit"]:
            events = events[: options["limit"]]

        selected = list(events)
        if not selected:
            self.stdout.write("No gateway events to replay.")
            return
        if options["dry_run"]:
            for event in selected:
                self.stdout.write(
                    f"would replay {event.payment_method.code} {event.event_id} "
                    f"({event.event_type}, {event.outcome}, {event.attempts} attempts)"
                )
            self.stdout.write(f"{len(selected)} event(s) would be replayed (dry run).")
            return

        counts: Counter[str] = Counter()
        with audit_context(channel=Channel.COMMAND, user=None):
            for event in selected:
                response = replay_gateway_event(event)
                outcome = (
                    response.body.get("status") or GatewayEvent.objects.get(pk=event.pk).outcome
                )
                counts[outcome] += 1
                self.stdout.write(
                    f"{event.payment_method.code} {event.event_id}: {outcome} "
                    f"(HTTP {response.http_status})"
                )
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        self.stdout.write(f"Replayed {len(selected)} event(s): {summary}.")
        if counts[EventOutcome.FAILED] or counts[EventOutcome.UNMATCHED]:
            raise CommandError("Some events are still failed or unmatched.")
