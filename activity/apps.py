from django.apps import AppConfig


class ActivityConfig(AppConfig):
    name = "activity"
    verbose_name = "Web activity"

    def ready(self) -> None:
        # Connects the receivers of contrib.auth's login signals (see activity.signals).
        from activity import signals  # noqa: F401
