"""Load the demo data (``orderflow.demo``) into a local database and print the login."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from orderflow.demo import DemoDataError
from orderflow.demo.load import load_demo_data
from orderflow.demo.plan import DEFAULT_ORDERS, DEFAULT_SEED
from orders.models import PaymentStatus

ADMIN_URL = "http://127.0.0.1:8000/admin/"


class Command(BaseCommand):
    help = (
        "Create demo payment methods, orders in every payment status (built through "
        "the real services), a 'demo' superuser and staff users 'viewer', 'clerk' and "
        "'manager' in the staff groups, all with one new random password. "
        "Local demos only; running it again adds nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--orders",
            type=int,
            default=DEFAULT_ORDERS,
            help="How many demo orders to have (default %(default)s).",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=DEFAULT_SEED,
            help="Random seed of the demo data (default %(default)s).",
        )

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo creates a superuser and prints its password: it is for local "
                "demos only and refuses to run with DJANGO_DEBUG=0."
            )
        if options["orders"] < 0:
            raise CommandError("--orders must be 0 or more.")
        try:
            summary = load_demo_data(orders=options["orders"], seed=options["seed"])
        except DemoDataError as exc:
            raise CommandError(str(exc)) from exc

        self.stdout.write(
            f"Payment methods: {summary.methods_created} created, "
            f"{summary.methods_present} already present."
        )
        numbers = summary.numbers
        span = f" ({numbers[0]} to {numbers[-1]})" if numbers else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Orders: {summary.orders_created} created, "
                f"{summary.orders_present} already present{span}."
            )
        )
        for status in PaymentStatus:
            count = summary.status_counts.get(status.value, 0)
            self.stdout.write(f"  {status.label:<18} {count:>4}")
        if summary.attention:
            self.stdout.write(
                self.style.WARNING(
                    "Orders that need attention, on purpose (admin filter 'needs attention'): "
                    + ", ".join(summary.attention)
                )
            )

        action = "Created" if summary.user_created else "Reset the password of"
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(f"{action} the demo superuser."))
        self.stdout.write(f"  Admin:     {ADMIN_URL}")
        self.stdout.write(f"  Username:  {summary.username}")
        self.stdout.write(f"  Password:  {summary.password}")
        self.stdout.write("")
        self.stdout.write(
            "Staff users, one per staff group, with the same password (see the "
            "README's staff groups):"
        )
        for username, group in summary.role_users:
            self.stdout.write(f"  {username:<10} {group}")
        self.stdout.write(
            self.style.WARNING(
                "These credentials are for this local demo only. The password changes "
                "every time seed_demo runs, for every demo user."
            )
        )
