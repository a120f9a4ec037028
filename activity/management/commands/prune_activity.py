"""Delete web activity older than the retention period (``ACTIVITY_RETENTION_DAYS``)."""

import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from activity.services import activity_prune


class Command(BaseCommand):
    help = (
        "Delete activity events older than ACTIVITY_RETENTION_DAYS (or --days), and the "
        "connections that ended before then. Run it daily, e.g. from a systemd timer or cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Keep this many days instead of ACTIVITY_RETENTION_DAYS.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=5000,
            help="Rows deleted per transaction (default 5000).",
        )

    def handle(self, *args, days: int | None, batch_size: int, **options) -> None:
        days = settings.ACTIVITY_RETENTION_DAYS if days is None else days
        if days < 1:
            raise CommandError("--days must be at least 1: pruning never deletes today's activity.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        before = timezone.now() - datetime.timedelta(days=days)
        self.stdout.write(
            f"Deleting web activity from before {timezone.localtime(before):%Y-%m-%d %H:%M}."
        )

        def progress(table: str, deleted: int) -> None:
            self.stdout.write(f"  {table}: {deleted} deleted so far")

        events, connections = activity_prune(
            before=before, batch_size=batch_size, progress=progress
        )
        self.stdout.write(
            self.style.SUCCESS(f"Deleted {events} events and {connections} connections.")
        )
