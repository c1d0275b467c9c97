"""
``INSERT ... ON CONFLICT DO NOTHING RETURNING``: a new row, unless a unique
constraint says it is already there, in one statement.

The ORM can ignore conflicts (``bulk_create(ignore_conflicts=True)``) but then
does not say whether the row went in, and ``save()`` finds out by raising
IntegrityError, which inside a transaction needs a savepoint around it. The
callback path writes two such rows per callback (the inbox event and the
ledger row), so it uses this instead. PostgreSQL and SQLite (3.35 or later)
both speak it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connections, models, router


def insert_unless_present(
    row: models.Model,
    constraint: str,
    *,
    computed: Mapping[str, tuple[str, Sequence[Any]]] | None = None,
) -> dict[str, Any] | None:
    """
    Insert ``row`` unless a row with the same values in the fields of the
    model's unique constraint named ``constraint`` exists (the conflict
    target; any other violation still raises IntegrityError).
    ``computed`` gives, for some fields, an SQL expression and its parameters
    to store instead of the instance's value (e.g. a foreign key looked up by
    a subquery in the same statement). Values go through each field's own
    conversion, as ``save()`` sends them. Return None when the row was
    already there; otherwise set the primary key on ``row`` and return the
    stored values of the computed fields' columns (by field name).
    """
    computed = dict(computed or {})
    meta = row._meta
    unique = _unique_fields(meta, constraint)
    alias = router.db_for_write(type(row))
    connection = connections[alias]
    quote = connection.ops.quote_name
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    placeholders: list[str] = []
    params: list[Any] = []
    for field in fields:
        if field.name in computed:
            sql, values = computed[field.name]
            placeholders.append(f"({sql})")
            params.extend(values)
        else:
            placeholders.append("%s")
            params.append(field.get_db_prep_save(field.pre_save(row, add=True), connection))
    returned = [meta.pk, *(meta.get_field(name) for name in computed)]
    columns = ", ".join(quote(field.column) for field in fields)
    target = ", ".join(quote(meta.get_field(name).column) for name in unique)
    # Names from the model's metadata, quoted; values are parameters, and the
    # computed expressions are the caller's own SQL, never input.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608
        f"VALUES ({', '.join(placeholders)}) ON CONFLICT ({target}) DO NOTHING "
        f"RETURNING {', '.join(quote(field.column) for field in returned)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        stored = cursor.fetchone()
    if stored is None:
        return None
    row.pk = stored[0]
    row._state.adding = False
    row._state.db = alias
    values = dict(zip(computed, stored[1:], strict=True))
    for name, value in values.items():
        setattr(row, meta.get_field(name).attname, value)
    return values


def _unique_fields(meta, name: str) -> Sequence[str]:
    for constraint in meta.constraints:
        if (
            constraint.name == name
            and isinstance(constraint, models.UniqueConstraint)
            and constraint.condition is None
            and constraint.fields
        ):
            return constraint.fields
    raise ValueError(f"{meta.label} has no unconditional unique constraint {name!r} on fields.")
