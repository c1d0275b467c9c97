"""
ORM queries compiled once and run many times.

Turning a queryset into SQL costs the callback path more than running it:
a gateway callback sends a handful of small reads whose shape never changes,
only their values (an id, an order number, a reference). ``CompiledQuery``
builds such a queryset once per database connection with marker values in
those places, keeps the SQL, its parameters and the ORM's converters for its
columns, and afterwards only swaps the values and runs it. The SQL is the
ORM's own: the rules stay written once, as querysets.

Only for queries whose parameters are all constants except the marked ones
(the clock must be the database's own ``Now()``, never a Python ``now()``
frozen into the parameters). A marker must appear exactly once among the
parameters; compiling refuses anything else.

The compiled form is kept for the connection's life and never rebuilt: a
query must not depend on anything that changes while the process runs
(settings, a translation, the time). Each has a name of its own, the key of
that cache; a second query with a name already taken is refused.

A query that locks rows (``select_for_update``) runs on the database that
writes the model, and only inside a transaction, as the ORM requires; in
autocommit mode the lock would end with the statement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from django.db import connections, models, router
from django.db.transaction import TransactionManagementError

_CACHE_ATTRIBUTE = "_orderflow_compiled_queries"
_NAMES: set[str] = set()


class Marker:
    """A value no real row holds, standing for a parameter until the query runs."""

    def __init__(self, sample: Any) -> None:
        self.sample = sample


def mark_int(n: int) -> Marker:
    """A marker for an integer parameter (an id): a negative number no id has."""
    return Marker(-7_315_946_281 - n)


def mark_str(n: int) -> Marker:
    """A marker for a text parameter."""
    return Marker(f"\x1f orderflow marker {n} \x1f")


class CompiledQuery:
    """
    A queryset of ``model`` built by ``build(*marker samples)``, compiled once
    per connection, run with real values in the markers' places.

    ``rows(*values)`` returns the rows as tuples, each column converted as
    the ORM converts it; ``instances(*values)`` returns model instances, for a
    queryset that selects whole rows of ``model`` (no ``values()``, no
    ``select_related()``).
    """

    def __init__(
        self,
        name: str,
        model: type[models.Model],
        build: Callable[..., models.QuerySet],
        *markers: Marker,
    ) -> None:
        if name in _NAMES:
            raise ValueError(f"A compiled query named {name!r} exists already.")
        _NAMES.add(name)
        self.name = name
        self.model = model
        self.build = build
        self.markers = markers
        self._locks: bool | None = None

    @property
    def locks(self) -> bool:
        """Whether the query locks the rows it reads (``select_for_update``)."""
        if self._locks is None:
            samples = [marker.sample for marker in self.markers]
            self._locks = bool(self.build(*samples).query.select_for_update)
        return self._locks

    def rows(self, *values: Any) -> list[tuple]:
        return [tuple(row) for row in self._run(values)[1]]

    def sql(self, *values: Any, using: str) -> tuple[str, list]:
        """
        The SQL and its parameters with ``values`` in place, for another
        statement on the connection ``using`` to embed (e.g. a subquery).
        """
        _compiler, sql, params, positions, _converters, _columns = self._compiled(using)
        return sql, self._bind(params, positions, values)

    def instances(self, *values: Any) -> list[models.Model]:
        names = [field.attname for field in self.model._meta.concrete_fields]
        alias, rows = self._run(values, width=len(names))
        return [self.model.from_db(alias, names, row) for row in rows]

    def _compiled(self, alias: str) -> tuple:
        connection = connections[alias]
        cache = connection.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
        if self.name not in cache:
            samples = [marker.sample for marker in self.markers]
            queryset = self.build(*samples)
            if queryset.model is not self.model:
                raise ValueError(f"{self.name}: the queryset is not of {self.model.__name__}.")
            compiler = queryset.query.get_compiler(alias)
            sql, params = compiler.as_sql()
            positions = []
            for sample in samples:
                found = [i for i, value in enumerate(params) if value == sample]
                if len(found) != 1:
                    raise ValueError(
                        f"{self.name}: a marker must appear once among the parameters, "
                        f"found {len(found)} times."
                    )
                positions.append(found[0])
            columns = [column for column, _sql, _alias in compiler.select]
            converters = compiler.get_converters(columns)
            cache[self.name] = (compiler, sql, tuple(params), positions, converters, len(columns))
        return cache[self.name]

    def _run(self, values: Sequence[Any], *, width: int | None = None) -> tuple[str, Iterator]:
        if self.locks:
            alias = router.db_for_write(self.model)
            if connections[alias].get_autocommit():
                raise TransactionManagementError(
                    f"{self.name}: select_for_update cannot be used outside of a transaction."
                )
        else:
            alias = router.db_for_read(self.model)
        compiler, sql, params, positions, converters, columns = self._compiled(alias)
        if width is not None and columns != width:
            raise ValueError(f"{self.name}: instances need whole rows of {self.model.__name__}.")
        bound = self._bind(params, positions, values)
        with connections[alias].cursor() as cursor:
            cursor.execute(sql, bound)
            fetched = cursor.fetchall()
        if converters:
            return alias, compiler.apply_converters(fetched, converters)
        return alias, iter(fetched)

    def _bind(self, params: tuple, positions: list[int], values: Sequence[Any]) -> list:
        if len(values) != len(positions):
            raise TypeError(f"{self.name}: {len(positions)} values expected, {len(values)} given.")
        bound = list(params)
        for position, value in zip(positions, values, strict=True):
            bound[position] = value
        return bound
