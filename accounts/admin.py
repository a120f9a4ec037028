"""The admin's "HTTP server users": web users (remote physicians) and the admins themselves."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from accounts.forms import WebUserChangeForm, WebUserCreationForm, WebUserPasswordForm
from accounts.models import User
from accounts.passwords import weak_password_message


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = WebUserChangeForm
    add_form = WebUserCreationForm
    change_password_form = WebUserPasswordForm
    list_display = ["username", "real_name", "is_active", "can_upload", "is_staff", "last_login"]
    list_filter = ["is_active", "can_upload", "is_staff"]
    search_fields = ["username", "real_name", "contact"]
    ordering = ["username"]
    fieldsets = [
        (None, {"fields": ["username", "password"]}),
        ("Web user", {"fields": ["real_name", "contact", "is_active", "can_upload"]}),
        (
            "Administration",
            {
                "classes": ["collapse"],
                "description": "Admins (staff) manage the server here; they are not web users.",
                "fields": ["is_staff", "is_superuser", "groups", "user_permissions"],
            },
        ),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (
            None,
            {
                "classes": ["wide"],
                "fields": [
                    "username",
                    "password1",
                    "password2",
                    "real_name",
                    "contact",
                    "is_active",
                    "can_upload",
                ],
            },
        ),
    ]

    def save_model(self, request: HttpRequest, obj: User, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            _warn_if_weak(request, obj.username, form.cleaned_data.get("password1") or "")

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        response = super().user_change_password(request, id, form_url)
        # The admin redirects only once the new password is saved.
        if request.method == "POST" and isinstance(response, HttpResponseRedirect):
            user = self.get_object(request, id)
            _warn_if_weak(request, user.username, request.POST.get("password1", ""))
        return response


def _warn_if_weak(request: HttpRequest, username: str, password: str) -> None:
    message = weak_password_message(username, password)
    if message:
        messages.warning(request, message)
