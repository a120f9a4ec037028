"""``python manage.py study_token STUDY_INSTANCE_UID``: print the study's fully qualified patient link.

A command has no request, so the address comes from the HTTP server setup (``tokens.links``).
"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pacsweb.models import ServerSetup
from studies.models import Study
from tokens import services
from tokens.links import LinkAddressUnknown, link_from_setup
from tokens.selectors import token_window
from tokens.window import AccessWindow, LinkState, link_state


class Command(BaseCommand):
    help = "Print the patient link of a study (from the HTTP server setup's address)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("study_uid", metavar="STUDY_INSTANCE_UID")

    def handle(self, *args, study_uid: str, **options) -> None:
        study = Study.objects.filter(study_uid=study_uid.strip()).first()
        if study is None:
            raise CommandError(f"no study with Study Instance UID {study_uid!r} in the archive")
        setup = ServerSetup.get()
        row, token = services.token_ensure(study=study)
        try:
            link = link_from_setup(setup, token)
        except LinkAddressUnknown as exc:
            raise CommandError(f"cannot build the link: {exc}") from exc
        self.stdout.write(link)
        window = token_window(row, setup)
        state = link_state(window=window, revoked=row.revoked_at is not None)
        if state is not LinkState.ACTIVE:
            # On stderr, so that scripts reading the link from stdout still get only the link.
            self.stderr.write(f"warning: this link is {state} now ({_why(window, state)})")


def _why(window: AccessWindow, state: LinkState) -> str:
    if state is LinkState.EXPIRED:
        return f"it worked until the end of {window.last_day:%Y-%m-%d}; extend it in the admin"
    if state is LinkState.NOT_YET_VALID:
        return f"it works from {window.first_day:%Y-%m-%d}"
    return "regenerate it in the admin to give the study a new link"
