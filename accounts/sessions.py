"""Django's database sessions, read with one lean query (``SESSION_ENGINE = "accounts.sessions"``).

Every request of a logged-in browser reads its session: a viewer fetching a study's frames
does it hundreds of times a second. Through the ORM that read costs about ten times the query
itself (building and compiling the queryset); here it is the same SELECT, written once.
Writing, creating and deleting sessions are Django's own.
"""

from django.contrib.sessions.backends import db
from django.db import connections, router
from django.utils import timezone


class SessionStore(db.SessionStore):
    def load(self) -> dict:
        model = self.model
        connection = connections[router.db_for_read(model)]
        quote = connection.ops.quote_name
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        # Only the model's own quoted names are formatted in; the values are bound parameters.
        sql = f"SELECT session_data FROM {quote(model._meta.db_table)} WHERE session_key = %s AND expire_date > %s"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.execute(sql, [self.session_key, now])
            row = cursor.fetchone()
        if row is None:
            # As Django's store: an unknown or expired key is dropped, and a new one is made
            # if the session is written.
            self._session_key = None
            return {}
        return self.decode(row[0])
