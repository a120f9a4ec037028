"""Django's ModelBackend, with the user of each logged-in request read by one lean query."""

from django.contrib.auth import backends, get_user_model
from django.core.exceptions import ValidationError
from django.db import connections, router
from django.db.models import Model


class ModelBackend(backends.ModelBackend):
    """Authenticates as Django's; ``get_user`` (run on every request) skips the queryset.

    ``AuthenticationMiddleware`` reads the session's user on every request, so a frame of a
    viewer costs as much ORM work as a page. The row is read with the SELECT the ORM would run,
    and converted by the same field converters, so the user is the same object.
    """

    def get_user(self, user_id):
        user = _user_by_pk(get_user_model(), user_id)
        return user if user is not None and self.user_can_authenticate(user) else None


def _user_by_pk(model: type[Model], pk) -> Model | None:
    try:
        pk = model._meta.pk.to_python(pk)
    except ValidationError:
        return None
    alias = router.db_for_read(model)
    connection = connections[alias]
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    columns = ", ".join(quote(field.column) for field in fields)
    # Only the model's own quoted names are formatted in; the key is a bound parameter.
    sql = f"SELECT {columns} FROM {quote(model._meta.db_table)} WHERE {quote(model._meta.pk.column)} = %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [model._meta.pk.get_db_prep_value(pk, connection)])
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for field, value in zip(fields, row, strict=True):
        # What the ORM's compiler applies to each column (SQLite's booleans and datetimes).
        column = field.get_col(model._meta.db_table)
        for converter in connection.ops.get_db_converters(column) + field.get_db_converters(
            connection
        ):
            value = converter(value, column, connection)
        values.append(value)
    return model.from_db(alias, [field.attname for field in fields], values)
