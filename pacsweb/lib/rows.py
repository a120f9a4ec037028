"""One model row by primary key, without building a queryset: for reads made on every request.

Through the ORM, ``Model.objects.get(pk=...)`` spends about ten times the query's own cost on
building and compiling the queryset; a request that checks its session, user and patient link
pays that several times. ``row_by_pk`` runs the SELECT the ORM would run, prepared once per
connection, and converts the columns with the same converters, so the instance is the same.
"""

import functools
from dataclasses import dataclass
from typing import TypeVar

from django.core.exceptions import ValidationError
from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.db.models.expressions import Col

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class _RowRead:
    """The SELECT of a model's row by primary key on one connection, and its column converters."""

    sql: str
    attnames: list[str]
    # (column index, column expression, converters) for the columns that need converting.
    converters: list[tuple[int, Col, list]]


# Per connection (one a thread), as the converters are bound to the connection's operations.
@functools.lru_cache(maxsize=256)
def _row_read(model: type[Model], connection: BaseDatabaseWrapper) -> _RowRead:
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    columns = ", ".join(quote(field.column) for field in fields)
    # Only the model's own quoted names are formatted in; the key is a bound parameter.
    sql = f"SELECT {columns} FROM {quote(model._meta.db_table)} WHERE {quote(model._meta.pk.column)} = %s"  # noqa: S608
    converters = []
    for index, field in enumerate(fields):
        # What the ORM's compiler applies to each column (SQLite's booleans and datetimes).
        column = field.get_col(model._meta.db_table)
        functions = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        if functions:
            converters.append((index, column, functions))
    return _RowRead(sql, [field.attname for field in fields], converters)


def row_by_pk(model: type[M], pk: object) -> M | None:
    """The row of ``model`` whose primary key is ``pk``, or None (also for a malformed key)."""
    try:
        pk = model._meta.pk.to_python(pk)
    except ValidationError:
        return None
    if pk is None:
        return None
    alias = router.db_for_read(model)
    connection = connections[alias]
    read = _row_read(model, connection)
    with connection.cursor() as cursor:
        cursor.execute(read.sql, [model._meta.pk.get_db_prep_value(pk, connection)])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, column, functions in read.converters:
        for function in functions:
            values[index] = function(values[index], column, connection)
    return model.from_db(alias, read.attnames, values)
