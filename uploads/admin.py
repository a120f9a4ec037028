from django.contrib import admin

from uploads.models import UploadBatch


@admin.register(UploadBatch)
class UploadBatchAdmin(admin.ModelAdmin):
    """Uploads are a record of what happened: readable by admins, never edited."""

    list_display = ["created_at", "user", "files", "stored", "duplicates", "rejected", "failed"]
    list_filter = ["created_at"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
