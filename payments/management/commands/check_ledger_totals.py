"""Report orders whose running totals or stored attention disagree with the ledger (for cron)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from orders.attention import attention_mismatches, refresh_attention
from orders.models import Order
from payments.ledger_totals import ledger_totals_mismatches


class Command(BaseCommand):
    help = (
        "Print every order whose captured or refunded total differs from the sum of its "
        "ledger's captures or refunds, and every order whose stored attention differs from "
        "what the attention rules say now. Exit status 1 when any differ, 0 otherwise."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--repair",
            action="store_true",
            help="Store what the attention rules say for the orders whose stored attention "
            "differs (running totals are only reported: they need a look at the ledger). "
            "Repaired orders do not count as differences.",
        )

    def handle(self, *args, **options) -> None:
        wrong_totals = set()
        for mismatch in ledger_totals_mismatches():
            self.stdout.write(str(mismatch))
            wrong_totals.add(mismatch.number)
        totals = len(wrong_totals)

        attention = 0
        for mismatch in attention_mismatches():
            if mismatch.number in wrong_totals:
                # The rules read those totals: the totals are the problem to report.
                continue
            if options["repair"]:
                with transaction.atomic():
                    pk = Order.objects.values_list("pk", flat=True).get(number=mismatch.number)
                    code = refresh_attention(pk, lock=True)
                self.stdout.write(f"{mismatch} (repaired: {code or '(none)'})")
            else:
                self.stdout.write(str(mismatch))
                attention += 1

        problems = []
        if totals:
            problems.append(f"{totals} order(s) with running totals that differ from the ledger")
        if attention:
            problems.append(
                f"{attention} order(s) whose stored attention differs from the rules "
                "(--repair stores what the rules say)"
            )
        if problems:
            raise CommandError("; ".join(problems) + ".", returncode=1)
        self.stdout.write("Running totals agree with the ledger for every order.")
        self.stdout.write("Stored attention agrees with the rules for every order.")
