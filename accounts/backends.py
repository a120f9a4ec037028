"""Django's ModelBackend, with the user of each logged-in request read by one lean query."""

import functools
from dataclasses import dataclass

from django.contrib.auth import backends, get_user_model
from django.core.exceptions import ValidationError
from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.db.models.expressions import Col


class ModelBackend(backends.ModelBackend):
    """Authenticates as Django's; ``get_user`` (run on every request) skips the queryset.

    ``AuthenticationMiddleware`` reads the session's user on every request, so a frame of a
    viewer costs as much ORM work as a page. The row is read with the SELECT the ORM would run,
    and converted by the same field converters, so the user is the same object.
    """

    def get_user(self, user_id):
        user = _user_by_pk(get_user_model(), user_id)
        return user if user is not None and self.user_can_authenticate(user) else None


@dataclass(frozen=True)
class _RowRead:
    """The SELECT of a model's row by primary key on one database, and its column converters."""

    sql: str
    attnames: list[str]
    # (column index, column expression, converters) for the columns that need converting.
    converters: list[tuple[int, Col, list]]


# Per connection (one a thread), as the converters are bound to the connection's operations.
@functools.lru_cache(maxsize=64)
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


def _user_by_pk(model: type[Model], pk) -> Model | None:
    try:
        pk = model._meta.pk.to_python(pk)
    except ValidationError:
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
