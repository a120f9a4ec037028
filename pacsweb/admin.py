from django.contrib import admin

from pacsweb.models import ServerSetup


@admin.register(ServerSetup)
class ServerSetupAdmin(admin.ModelAdmin):
    readonly_fields = ["public_ip"]

    def has_add_permission(self, request) -> bool:
        return not ServerSetup.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
