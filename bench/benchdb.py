"""
The throwaway PostgreSQL database every benchmark here runs on.

A bench drops and creates the database named in ``DATABASE_URL``, so it
refuses any database that is not PostgreSQL or whose name lacks "bench".
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

PROJECT = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """The bench cannot run, or what it measured is not what it meant to measure."""


def configure_django(script: str) -> dict[str, Any]:
    """Set Django up on the bench database; refuse anything but a PostgreSQL bench db."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orderflow.settings")
    sys.path.insert(0, str(PROJECT))
    import django
    from django.db import connection

    django.setup()
    if connection.vendor != "postgresql":
        raise BenchError(
            f"{script} measures PostgreSQL only; the configured database is "
            f"{connection.vendor}. Set DATABASE_URL=postgres://USER@HOST:5432/orderflow_bench."
        )
    name = connection.settings_dict["NAME"] or ""
    if "bench" not in name:
        raise BenchError(
            f"The database {name!r} would be dropped and created again; "
            "name a throwaway database whose name contains 'bench', e.g. orderflow_bench."
        )
    return connection.settings_dict


def server_params(settings_dict: dict[str, Any], dbname: str) -> dict[str, Any]:
    """psycopg connection parameters for ``dbname`` on the bench database's server."""
    params: dict[str, Any] = {"dbname": dbname}
    for key, param in (("USER", "user"), ("PASSWORD", "password"), ("HOST", "host")):
        if settings_dict.get(key):
            params[param] = settings_dict[key]
    if settings_dict.get("PORT"):
        params["port"] = settings_dict["PORT"]
    return params


def recreate_database(settings_dict: dict[str, Any], *, drop_only: bool = False) -> None:
    """Drop the bench database and (unless ``drop_only``) create it empty."""
    name = sql.Identifier(settings_dict["NAME"])
    with psycopg.connect(**server_params(settings_dict, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(name))
        if not drop_only:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(name))


def run_on_bench_database(script: str, *, keep: bool, work: Callable[[dict[str, Any]], int]) -> int:
    """
    Run ``work(settings_dict)`` on a fresh bench database; return the exit status.

    2 when the database is not a bench database, 1 when ``work`` raises
    BenchError; the database is dropped afterwards unless ``keep``.
    """
    try:
        settings_dict = configure_django(script)
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 2

    recreate_database(settings_dict)
    try:
        return work(settings_dict)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        from django.db import connections

        connections.close_all()
        if keep:
            print(f"kept database {settings_dict['NAME']}")
        else:
            recreate_database(settings_dict, drop_only=True)


# SQL: i % 100 -> payment status, a store's mix, so that generated tables
# (and the planner's statistics on them) look like a store's.
STATUS_MIX = """
CASE
  WHEN i % 100 < 60 THEN 'paid'
  WHEN i % 100 < 70 THEN 'awaiting_payment'
  WHEN i % 100 < 78 THEN 'authorized'
  WHEN i % 100 < 82 THEN 'partially_paid'
  WHEN i % 100 < 88 THEN 'refunded'
  WHEN i % 100 < 94 THEN 'cancelled'
  ELSE 'declined'
END
"""
