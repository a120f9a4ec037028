"""Writes to the user accounts."""

import secrets

from accounts.models import User

ADMIN_USERNAME = "admin"


def admin_ensure(*, password: str = "") -> str | None:
    """Create the first admin account when there is none; return its password, else None.

    The password is ``password`` when given (the operator's environment), otherwise random; the
    caller prints it once, since it is stored only as a hash.
    """
    if User.objects.filter(is_superuser=True).exists():
        return None
    password = password or secrets.token_urlsafe(12)
    User.objects.create_superuser(
        username=ADMIN_USERNAME, password=password, real_name="Administrator"
    )
    return password
