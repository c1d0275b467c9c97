"""System checks: configuration mistakes surface at start-up, not mid-shift."""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register()
def check_discouraged_transitions(app_configs, **kwargs):
    from orders.policy import discouraged_transitions

    try:
        discouraged_transitions()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="orders.E001")]
    return []


# INSERT ... ON CONFLICT ... RETURNING (orderflow.inserts) came in SQLite 3.35.
SQLITE_AT_LEAST = (3, 35)


def _uses_sqlite() -> bool:
    from django.conf import settings

    return any(db.get("ENGINE", "").endswith("sqlite3") for db in settings.DATABASES.values())


@checks.register()
def check_sqlite_version(app_configs, **kwargs):
    import sqlite3

    if not _uses_sqlite() or sqlite3.sqlite_version_info >= SQLITE_AT_LEAST:
        return []
    needed = ".".join(map(str, SQLITE_AT_LEAST))
    return [
        checks.Error(
            f"SQLite {sqlite3.sqlite_version} is too old: orderflow needs {needed} or later "
            "(INSERT ... ON CONFLICT ... RETURNING).",
            hint="Use a Python built with a newer SQLite, or PostgreSQL (DATABASE_URL).",
            id="orders.E002",
        )
    ]
