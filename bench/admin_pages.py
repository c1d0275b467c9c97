"""
Order admin pages on a large table: the project's OrderAdmin against a default ModelAdmin.

Run from the project folder, on PostgreSQL only::

    DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/orderflow_bench \\
        .venv/bin/python bench/admin_pages.py [--sizes 100000,1000000] [--runs 5]

The database named in DATABASE_URL is dropped and created again, migrated,
filled and dropped at the end (``--keep`` keeps it); its name must contain
"bench" so that a real database is never dropped.

**Data.** Orders are generated with SQL (``generate_series``), in batches up
to each size in ``--sizes`` (100,000 then 1,000,000 by default): a status
mix of a real store (60 % paid, 10 % awaiting payment, 8 % authorized, 4 %
partially paid, 6 % refunded, 6 % cancelled, 6 % declined), four payment
methods (two online, two offline), one e-mail for every four orders, placed
every 20 seconds back in time; the ledger rows each status implies
(authorization, capture, refund, void) and one applied gateway event per
online order with money. About 1.4 % of the orders need attention: an
unacknowledged ignored event (1 %), Paid with nothing captured (0.2 %), a
failed event (0.1 %), an open dispute (0.05 %). The stored attention is then
computed by the project's own ``orders.attention.refresh_attention_of`` and
the tables are vacuumed and analyzed. One more order, placed through the
services, gets 200 history records through ``override_status`` for the
change and history pages.

**Pages.** Rendered through ``django.test.Client`` as a logged-in superuser,
``DEBUG`` off: the list (default), status = paid, needs attention, a search
by order number, a search by e-mail, the order change page and its history
page. Each is rendered once to warm up, once more to count its SQL
queries, then ``--runs`` times for the median time. The same pages (less
the needs-attention filter, which it does not have) are rendered through a
default ``ModelAdmin`` of ``Order`` with only ``search_fields`` added,
registered on an AdminSite of its own, in the same run.

**Output.** One table per size: queries and median milliseconds of each
side, the ratio to the default admin's same page, and the ratio to the
default admin's default list page (the goal at 1,000,000 orders: at most
1.0 for every list page, the needs-attention filter and the search by
number). ``--explain`` adds ``EXPLAIN (ANALYZE, BUFFERS)`` of the slowest
query of each of our list pages.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
import warnings
from dataclasses import dataclass

from benchdb import STATUS_MIX, BenchError, run_on_bench_database

STEP_SECONDS = 20
HISTORY_RECORDS = 200


# -- data -------------------------------------------------------------------------------

METHODS = [
    # code, kind, gateway
    ("card", "online", "hmac"),
    ("wallet", "online", "hmac"),
    ("check", "offline", ""),
    ("wire", "offline", ""),
]

# The special cases below are all in the "paid" range of STATUS_MIX.
# i % 10 -> method (0-6 card, 7 wallet, 8 check, 9 wire): the special cases are online.
METHOD_OF = (
    "CASE WHEN i % 10 < 7 THEN {card} WHEN i % 10 = 7 THEN {wallet} "
    "WHEN i % 10 = 8 THEN {check} ELSE {wire} END"
)
IGNORED_EVENT = "o.id % 100 = 7"  # an extra capture the gateway reported: ignored
NOTHING_CAPTURED = "i % 500 = 13"  # Paid, nothing captured (an override)
FAILED_EVENT = "o.id % 1000 = 21"  # processing crashed
OPEN_DISPUTE = "i % 2000 = 33"


def generate(lo: int, hi: int, methods: dict[str, int]) -> None:
    """Insert orders ``lo..hi`` with their ledger rows and gateway events, in SQL."""
    from django.db import connection

    method_of = METHOD_OF.format(**methods)
    online = f"({methods['card']}, {methods['wallet']})"
    statements = [
        f"""
        INSERT INTO orders_order (id, number, status, total, currency, payment_method_id,
            customer_email, gateway_reference, captured_amount, refunded_amount,
            disputed_amount, dispute_status, placed_at, updated_at, attention_code)
        SELECT i, 'A' || lpad(i::text, 9, '0'), s.status, s.total, 'USD', s.method,
            'customer' || (i / 4) || '@example.com',
            CASE WHEN s.method IN {online} THEN 'pi_' || i ELSE '' END,
            CASE WHEN {NOTHING_CAPTURED} THEN 0
                 WHEN s.status IN ('paid', 'refunded') THEN s.total
                 WHEN s.status = 'partially_paid' THEN round(s.total / 2, 2)
                 ELSE 0 END,
            CASE WHEN s.status = 'refunded' THEN s.total ELSE 0 END,
            CASE WHEN {OPEN_DISPUTE} THEN s.total ELSE 0 END,
            CASE WHEN {OPEN_DISPUTE} THEN 'open' ELSE '' END,
            now() - i * interval '{STEP_SECONDS} seconds',
            now() - i * interval '{STEP_SECONDS} seconds', ''
        FROM generate_series({lo}, {hi}) AS i,
        LATERAL (SELECT {STATUS_MIX} AS status, 20.99 + (i * 37) % 480 AS total,
                 {method_of} AS method) AS s
        """,
        # The ledger each status implies.
        f"""
        INSERT INTO payments_paymenttransaction (order_id, payment_method_id, kind, amount,
            currency, reference, created_at, created_by_id, event_id, channel)
        SELECT o.id, o.payment_method_id, k.kind, k.amount, 'USD', k.prefix || o.id,
            o.placed_at, NULL, NULL, 'gateway'
        FROM orders_order o
        CROSS JOIN LATERAL (VALUES
            ('authorization', o.total, 'pi_', o.status IN ('authorized', 'cancelled')),
            ('capture', o.captured_amount, 'ch_', o.captured_amount > 0),
            ('refund', o.refunded_amount, 're_', o.refunded_amount > 0),
            ('void', o.total, 'pi_', o.status = 'cancelled'),
            ('dispute', o.disputed_amount, 'dp_', o.disputed_amount > 0)
        ) AS k(kind, amount, prefix, wanted)
        WHERE o.id BETWEEN {lo} AND {hi} AND k.wanted
        """,
        # One applied event per online order with money; the flagged ones.
        f"""
        INSERT INTO payments_gatewayevent (payment_method_id, event_id, event_type, raw_body,
            received_at, outcome, detail, order_id, processed_at, kind, amount, reference,
            deferred, attempts, acknowledged_at, acknowledged_by_id)
        SELECT o.payment_method_id, e.prefix || o.id, e.type, '{{}}', o.placed_at, e.outcome,
            '', o.id, o.placed_at, e.kind, o.total, 'ch_' || o.id, false, 1, NULL, NULL
        FROM orders_order o
        CROSS JOIN LATERAL (VALUES
            ('evt_', 'payment.captured', 'applied', 'captured',
             o.status NOT IN ('awaiting_payment', 'declined')),
            ('evt_x_', 'payment.captured', 'ignored', 'captured', {IGNORED_EVENT}),
            ('evt_f_', 'payment.refunded', 'failed', '', {FAILED_EVENT})
        ) AS e(prefix, type, outcome, kind, wanted)
        WHERE o.id BETWEEN {lo} AND {hi} AND o.payment_method_id IN {online} AND e.wanted
        """,
        "SELECT setval('orders_order_id_seq', (SELECT max(id) FROM orders_order))",
    ]
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def search_indexes(*, present: bool) -> None:
    """Drop or build the trigram search indexes (one build beats a million updates)."""
    import importlib

    from django.db import connection

    migration = importlib.import_module("orders.migrations.0007_search_indexes")
    with connection.schema_editor() as editor:
        (migration.create if present else migration.drop)(None, editor)


def vacuum_analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def history_order(method_code: str):
    """An order placed through the services, with HISTORY_RECORDS status changes."""
    from orders.models import PaymentStatus
    from orders.services import override_status, place_order

    order = place_order(
        number="HISTORY-1", total="50.00", currency="USD", payment_method=method_code
    )
    statuses = [PaymentStatus.AUTHORIZED, PaymentStatus.AWAITING_PAYMENT]
    for n in range(HISTORY_RECORDS - 1):
        order = override_status(order, statuses[n % 2], user=None, reason=f"bench change {n}")
    return order


# -- pages ------------------------------------------------------------------------------


@dataclass
class Measure:
    queries: int
    median_ms: float
    slowest_sql: str


def plain_urlconf():
    """The project's URLs plus a default ModelAdmin of Order on its own site, at /plain/."""
    from django.contrib import admin
    from django.urls import path

    from orderflow.urls import urlpatterns
    from orders.models import Order

    class PlainOrderAdmin(admin.ModelAdmin):
        search_fields = ["number", "customer_email", "gateway_reference"]

    site = admin.AdminSite(name="plain")
    site.register(Order, PlainOrderAdmin)
    module = types.ModuleType("bench_admin_urls")
    module.urlpatterns = [*urlpatterns, path("plain/", site.urls)]
    sys.modules[module.__name__] = module
    return module.__name__


def count_queries(client, url: str) -> tuple[int, str]:
    """Render once to warm up, once more counting; return the count and the slowest SQL."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)
    if response.status_code != 200:
        raise BenchError(f"{url} answered {response.status_code}")
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    # Read now: the captured list is a window on a log later requests reset.
    queries = list(captured.captured_queries)
    return len(queries), max(queries, key=lambda q: float(q["time"]))["sql"]


def measure(client, urls: list[str], runs: int) -> list[Measure]:
    """
    Measure pages side by side: each run renders every page once, in turn.

    On a shared machine the load changes from second to second; interleaving
    gives the pages compared in a ratio the same share of it.
    """
    counted = [count_queries(client, url) for url in urls]
    times: list[list[float]] = [[] for _ in urls]
    for _ in range(runs):
        for url, spent in zip(urls, times, strict=True):
            started = time.perf_counter()
            client.get(url)
            spent.append((time.perf_counter() - started) * 1000)
    return [
        Measure(queries, statistics.median(spent), slowest)
        for (queries, slowest), spent in zip(counted, times, strict=True)
    ]


def explain(query: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}")
        return "\n".join(row[0] for row in cursor.fetchall())


def pages(size: int, history_pk: int) -> list[tuple[str, str, str | None]]:
    """(label, our URL, the default admin's URL or None)."""
    number = f"A{size // 2 + 7:09d}"
    email = f"customer{size // 8 + 3}@example.com"
    ours, plain = "/admin/orders/order/", "/plain/orders/order/"
    return [
        ("list (default)", ours, plain),
        ("status = paid", f"{ours}?status__exact=paid", f"{plain}?status__exact=paid"),
        ("needs attention", f"{ours}?attention=yes", None),
        (f"search number {number}", f"{ours}?q={number}", f"{plain}?q={number}"),
        ("search number part", f"{ours}?q={number[-6:]}", f"{plain}?q={number[-6:]}"),
        ("search e-mail", f"{ours}?q={email}", f"{plain}?q={email}"),
        (
            f"change page ({HISTORY_RECORDS} history)",
            f"{ours}{history_pk}/change/",
            f"{plain}{history_pk}/change/",
        ),
        ("history page", f"{ours}{history_pk}/history/", f"{plain}{history_pk}/history/"),
    ]


def report(size: int, rows: list[tuple[str, Measure, Measure | None, Measure]]) -> None:
    print(f"\n{size:,} orders")
    header = (
        f"{'page':32} {'queries':>7} {'ms':>9}   {'default q':>9} {'default ms':>10}"
        f" {'ratio same':>10} {'ratio dflt list':>15}"
    )
    print(header)
    print("-" * len(header))
    for label, ours, plain, baseline in rows:
        same = f"{ours.median_ms / plain.median_ms:10.2f}" if plain else f"{'':>10}"
        print(
            f"{label:32} {ours.queries:7d} {ours.median_ms:9.1f}   "
            f"{plain.queries if plain else '-':>9} "
            f"{f'{plain.median_ms:.1f}' if plain else '-':>10} {same} "
            f"{ours.median_ms / baseline.median_ms:15.2f}"
        )


def bench(args: argparse.Namespace) -> int:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import override_settings

    from orders.attention import refresh_attention_of
    from orders.models import Order
    from payments.models import PaymentMethod

    call_command("migrate", verbosity=0)
    methods = {}
    for code, kind, gateway in METHODS:
        methods[code] = PaymentMethod.objects.create(
            code=code, name=code.title(), kind=kind, gateway=gateway, webhook_secret="x"
        ).pk
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
    urlconf = plain_urlconf()
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }

    # Placed first, through the services: id 1, before the generated ids.
    history = history_order("card")
    done = history.pk
    for size in args.sizes:
        started = time.perf_counter()
        search_indexes(present=False)
        generate(done + 1, size, methods)
        search_indexes(present=True)
        generated = time.perf_counter() - started
        started = time.perf_counter()
        flagged = refresh_attention_of(Order.objects.filter(pk__range=(done + 1, size)))
        refreshed = time.perf_counter() - started
        started = time.perf_counter()
        vacuum_analyze()
        analyzed = time.perf_counter() - started
        done = size
        print(
            f"\n{size:,} orders: generated (search indexes built) in {generated:.1f} s, "
            "attention stored for "
            f"{flagged:,} in {refreshed:.1f} s, VACUUM ANALYZE {analyzed:.1f} s"
        )

        rows = []
        with override_settings(
            DEBUG=False, ROOT_URLCONF=urlconf, ALLOWED_HOSTS=["testserver"], STORAGES=storages
        ):
            client = Client()
            client.force_login(user)
            for label, ours_url, plain_url in pages(size, history.pk):
                # Every page is measured next to the default admin's default list
                # (the goal's reference) and its own counterpart.
                urls = [ours_url, "/plain/orders/order/"]
                if plain_url and plain_url != urls[1]:
                    urls.append(plain_url)
                ours, reference, *same = measure(client, urls, args.runs)
                plain = same[0] if same else (reference if plain_url else None)
                rows.append((label, ours, plain, reference))
                if args.explain and "/change/" not in ours_url and "/history/" not in ours_url:
                    print(f"\n-- {label}: slowest query\n{ours.slowest_sql}\n")
                    print(explain(ours.slowest_sql))
        report(size, rows)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="100000,1000000",
        type=lambda value: sorted(int(v) for v in value.split(",")),
        help="order counts to measure at, ascending (default 100000,1000000)",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per page (default 5)")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN the list queries")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", "No directory at", UserWarning)  # whitenoise, no static
    return run_on_bench_database(
        "bench/admin_pages.py", keep=args.keep, work=lambda _settings: bench(args)
    )


if __name__ == "__main__":
    sys.exit(main())
