"""Report orders whose running totals disagree with the ledger (for cron)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from payments.ledger_totals import ledger_totals_mismatches


class Command(BaseCommand):
    help = (
        "Print every order whose captured or refunded total differs from the sum of its "
        "ledger's captures or refunds. Exit status 1 when any differ, 0 otherwise."
    )

    def handle(self, *args, **options) -> None:
        count = 0
        for mismatch in ledger_totals_mismatches():
            self.stdout.write(str(mismatch))
            count += 1
        if count:
            raise CommandError(
                f"{count} order(s) with running totals that differ from the ledger.",
                returncode=1,
            )
        self.stdout.write("Running totals agree with the ledger for every order.")
