"""
Indexes for the order list's search (number, customer email, gateway reference).

The admin searches with ``icontains``, which PostgreSQL runs as
``UPPER(column) LIKE UPPER('%term%')``: trigram GIN indexes on ``UPPER(column)``
(pg_trgm) serve it for any part of the value. SQLite has no equivalent; there
the search scans, which is fine at the sizes SQLite serves.
"""

from django.db import migrations

COLUMNS = ["number", "customer_email", "gateway_reference"]


def index_name(column: str) -> str:
    return f"order_{column}_trgm"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {index_name(column)} ON orders_order "
            f"USING gin (UPPER({column}) gin_trgm_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS {index_name(column)}")


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0006_stored_attention"),
    ]

    operations = [migrations.RunPython(create, drop)]
