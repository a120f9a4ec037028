"""Forms of the web users: the login form and the admin's user forms."""

from django.contrib.auth.forms import (
    AdminPasswordChangeForm,
    AuthenticationForm,
    UserChangeForm,
    UserCreationForm,
)

from accounts.models import User


class LoginForm(AuthenticationForm):
    """Django's login form: one message for every failure, so it never tells who exists.

    A wrong password, an unknown username and an inactive account all get the same error
    (``ModelBackend`` refuses inactive users before their password is compared).
    """

    error_messages = {
        "invalid_login": "The username or password is not correct.",
        "inactive": "The username or password is not correct.",
    }


class WebUserCreationForm(UserCreationForm):
    """Adding a user in the admin: a password is always set (web users log in with one)."""

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ["username", "real_name", "contact", "is_active", "can_upload"]


class WebUserChangeForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User
        fields = "__all__"


class WebUserPasswordForm(AdminPasswordChangeForm):
    """Setting a user's password in the admin, without the option to disable password logins."""

    def __init__(self, user: User, *args, **kwargs) -> None:
        super().__init__(user, *args, **kwargs)
        self.fields.pop("usable_password", None)
        self.fields["password1"].required = True
        self.fields["password2"].required = True
