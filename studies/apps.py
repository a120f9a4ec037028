from django.apps import AppConfig


class StudiesConfig(AppConfig):
    name = "studies"
    verbose_name = "Archive"

    def ready(self) -> None:
        from pydicom import config as pydicom_config

        from studies import lookups  # noqa: F401 - registers the wildcard lookup.

        # pydicom checks every value it reads against its VR's pattern only to warn: a fifth of
        # ingest's time. pacsweb checks what it relies on itself (UIDs, dates, numbers).
        pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
