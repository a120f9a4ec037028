from django.contrib import admin

from studies.models import Study


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = [
        "study_date",
        "patient",
        "description",
        "modalities",
        "accession_number",
        "num_instances",
    ]
    list_select_related = ["patient"]
    search_fields = ["study_uid", "accession_number", "patient__patient_id", "patient__name"]
    date_hierarchy = "study_date"

    def has_add_permission(self, request) -> bool:
        # Studies only enter through ingest.
        return False
