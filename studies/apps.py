from django.apps import AppConfig


class StudiesConfig(AppConfig):
    name = "studies"
    verbose_name = "Archive"

    def ready(self) -> None:
        from studies import lookups  # noqa: F401 - registers the wildcard lookup.
