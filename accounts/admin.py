from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "real_name", "is_active", "can_upload", "is_staff", "last_login"]
    list_filter = ["is_active", "can_upload", "is_staff"]
    fieldsets = [
        (None, {"fields": ["username", "password"]}),
        ("Web user", {"fields": ["real_name", "contact", "is_active", "can_upload"]}),
        ("Administration", {"fields": ["is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
