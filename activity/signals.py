"""Log-in, log-out and failed log-in, taken from django.contrib.auth's signals.

These signals are contrib.auth's public extension point: Django's own ``LoginView`` and
``LogoutView`` (and the admin's login) send them from ``login()``, ``logout()`` and
``authenticate()``, so the accounts app needs no change to be recorded, and a login made any other
way (the test client, a future single sign-on) is recorded too. The receivers only hand over to
``activity.services``, where the logic lives and is tested.
"""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from activity import services
from activity.models import Event


def _has_session(request: HttpRequest | None) -> bool:
    # authenticate() called without a request (a management command) has no visitor to record.
    return request is not None and hasattr(request, "session")


@receiver(user_logged_in, dispatch_uid="activity_login")
def _logged_in(sender, request: HttpRequest | None, user, **kwargs) -> None:
    if _has_session(request):
        services.connection_login(request, user=user)


@receiver(user_logged_out, dispatch_uid="activity_logout")
def _logged_out(sender, request: HttpRequest | None, user, **kwargs) -> None:
    # Sent before the session is flushed, so the connection is still known here.
    if _has_session(request) and user is not None:
        services.connection_logout(request)


@receiver(user_login_failed, dispatch_uid="activity_login_failed")
def _login_failed(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    if _has_session(request):
        # contrib.auth has already masked the password in ``credentials``; only the name is kept.
        username = str(credentials.get("username", ""))[:150]
        services.record(request, Event.Kind.LOGIN_FAILED, detail={"username": username})
