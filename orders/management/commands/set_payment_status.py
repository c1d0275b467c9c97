"""Set one payment status on many orders, with a reason, in batches (``orders.bulk``)."""

from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from orderflow.audit import Channel, audit_context
from orderflow.cli import open_numbers, parse_age, usage_error
from orders.bulk import (
    DEFAULT_BATCH_SIZE,
    LABELS,
    PROBLEMS,
    BulkSummary,
    Selection,
    set_statuses,
)
from orders.exceptions import InvalidOrder
from orders.models import PaymentStatus
from orders.services import OverrideResult
from payments.models import PaymentMethod


def _split(values: list[str] | None) -> list[str]:
    return [item.strip() for value in values or [] for item in value.split(",") if item.strip()]


class Command(BaseCommand):
    help = (
        "Set the payment status of many orders by hand, with a reason, under the rules of "
        "the admin's 'Change payment status': orders already in the status are left alone, "
        "discouraged changes need --allow-discouraged, and each changed order gets one "
        "history record on the 'command' channel. Orders are locked and changed in batches, "
        "one transaction each. Exit status 0 when every selected order was changed or "
        "already there, 1 when any was not found, refused or failed, 2 for a usage error."
    )

    def add_arguments(self, parser) -> None:
        statuses = ", ".join(PaymentStatus.values)
        parser.add_argument("--to", help=f"The new payment status: {statuses}.")
        parser.add_argument("--reason", help="Why; kept in each changed order's history.")
        parser.add_argument("--orders", help="Order numbers, separated by commas.")
        parser.add_argument(
            "--from-file",
            help="A file of order numbers: one a line, or a CSV with a 'number' column.",
        )
        parser.add_argument(
            "--status",
            action="append",
            help="Only orders in this status (repeatable, or separated by commas).",
        )
        parser.add_argument("--method", help="Only orders paid with this payment method code.")
        parser.add_argument(
            "--older-than", help="Only orders placed longer ago than this (e.g. 30m, 12h, 7d)."
        )
        parser.add_argument(
            "--allow-discouraged",
            action="store_true",
            help="Make discouraged changes too (e.g. Paid -> Cancelled), each recorded as such.",
        )
        parser.add_argument(
            "--user",
            help="Act as this user: their permissions apply and the history names them "
            "(default: the command channel, no user).",
        )
        parser.add_argument(
            "--batch-size",
            default=str(DEFAULT_BATCH_SIZE),
            help="Orders locked and changed per transaction (default %(default)s).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would change; write nothing."
        )

    def handle(self, *args, **options) -> None:
        new_status = (options["to"] or "").strip()
        if not new_status:
            raise usage_error("--to is required: the new payment status.")
        selection = self._selection(options)
        user = self._user(options["user"])
        batch_size = self._batch_size(options["batch_size"])
        if not (options["reason"] or "").strip():
            raise usage_error("--reason is required and cannot be blank.")

        total = None
        if selection.numbers is None:
            total = selection.filtered().count()
        # The raw stream: OutputWrapper would end each of tqdm's redraws with a newline.
        bar = tqdm(total=total, unit="order", file=self.stderr._out, disable=None)
        try:
            with audit_context(channel=Channel.COMMAND, user=user):
                summary = set_statuses(
                    selection,
                    new_status,
                    user=user,
                    reason=options["reason"],
                    allow_discouraged=options["allow_discouraged"],
                    batch_size=batch_size,
                    dry_run=options["dry_run"],
                    progress=bar.update,
                )
        except InvalidOrder as exc:
            raise usage_error(str(exc)) from None
        finally:
            bar.close()
        self._report(summary)

    # -- options -----------------------------------------------------------------

    def _selection(self, options) -> Selection:
        statuses = tuple(dict.fromkeys(_split(options["status"])))
        for status in statuses:
            if status not in PaymentStatus.values:
                raise usage_error(
                    f"--status {status!r} is not a payment status; use one of: "
                    f"{', '.join(PaymentStatus.values)}."
                )
        method_id = None
        if options["method"] is not None:
            code = options["method"].strip()
            method_id = PaymentMethod.objects.filter(code=code).values_list("pk", flat=True).first()
            if method_id is None:
                raise usage_error(f"There is no payment method {code!r}.")
        placed_before = None
        if options["older_than"] is not None:
            try:
                age = parse_age(options["older_than"])
            except CommandError as exc:
                raise usage_error(f"--older-than: {exc}") from None
            if not age:
                raise usage_error("--older-than must be more than zero (e.g. 7d).")
            placed_before = timezone.now() - age
        lists = []
        if options["orders"] is not None:
            numbers = _split([options["orders"]])
            if not numbers:
                raise usage_error("--orders names no order number.")
            lists.append(numbers)
        if options["from_file"] is not None:
            lists.append(open_numbers(options["from_file"]))
        selection = Selection(
            numbers=itertools.chain(*lists) if lists else None,
            statuses=statuses,
            method_id=method_id,
            placed_before=placed_before,
        )
        if selection.numbers is None and not selection.has_filters:
            raise usage_error(
                "Select the orders: --orders, --from-file, or a filter (--status, --method, "
                "--older-than). There is no 'every order'."
            )
        return selection

    def _user(self, username: str | None):
        if username is None:
            return None
        model = get_user_model()
        try:
            return model._default_manager.get(**{model.USERNAME_FIELD: username})
        except model.DoesNotExist:
            raise usage_error(f"There is no user {username!r}.") from None

    def _batch_size(self, text: str) -> int:
        try:
            size = int(text)
        except ValueError:
            size = 0
        if size < 1:
            raise usage_error(f"--batch-size must be a whole number, 1 or more; got {text!r}.")
        return size

    # -- output ------------------------------------------------------------------

    def _report(self, summary: BulkSummary) -> None:
        target = summary.new_status
        if summary.dry_run:
            changes = summary.examples.get(OverrideResult.CHANGED, [])
            for line in changes:
                self.stdout.write(f"would change {line.number}: {line.old_status} -> {target}")
            more = summary.more(OverrideResult.CHANGED)
            if more:
                self.stdout.write(f"... and {more} more")
        title = "Dry run, nothing written" if summary.dry_run else "Done"
        self.stdout.write(f"{title}: {summary.selected} order(s) selected, target {target}.")
        for result, label in LABELS.items():
            if result == OverrideResult.CHANGED and summary.dry_run:
                label = "would change"
            self.stdout.write(f"  {label}: {summary.counts[result]}")
        if summary.failed_batches:
            self.stdout.write(
                f"  {summary.failed_batches} batch(es) failed and were rolled back "
                "(the error is in the log); the others are committed."
            )
        problems = [result for result in LABELS if result in PROBLEMS and summary.counts[result]]
        for result in problems:
            names = []
            for line in summary.examples.get(result, []):
                detail = f" ({line.old_status})" if line.old_status else ""
                names.append(f"{line.number}{detail}")
            more = summary.more(result)
            tail = f" and {more} more" if more else ""
            self.stdout.write(f"{LABELS[result]}: {', '.join(names)}{tail}")
            messages = {line.message for line in summary.examples.get(result, []) if line.message}
            if result != OverrideResult.NOT_FOUND:
                for message in sorted(messages):
                    self.stdout.write(f"  {message}")
        if problems:
            raise CommandError(
                "Some selected orders were not changed: "
                + ", ".join(f"{summary.counts[r]} {LABELS[r]}" for r in problems)
                + ".",
                returncode=1,
            )
