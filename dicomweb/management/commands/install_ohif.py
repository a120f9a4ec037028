from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from dicomweb import ohif


class Command(BaseCommand):
    help = (
        f"Download {ohif.PACKAGE}@{ohif.VERSION} from the configured npm registry "
        "(NPM_CONFIG_REGISTRY, ~/.npmrc or npm's own setting), verify it and install it for /ohif/."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--force", action="store_true", help="Reinstall even if installed.")
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="Do nothing when installed; when the install fails, warn and exit 0 "
            "(for start-up scripts that must start offline).",
        )
        parser.add_argument(
            "--tarball-dir",
            type=Path,
            help=f"Folder to keep (or find) the downloaded {ohif.TARBALL_NAME} in.",
        )

    def handle(
        self, *args, force: bool, if_missing: bool, tarball_dir: Path | None, **options
    ) -> None:
        if if_missing and ohif.is_installed():
            return
        try:
            ohif.install(force=force, tarball_folder=tarball_dir, progress=self.stdout.write)
        except ohif.OhifInstallError as exc:
            if if_missing:
                self.stderr.write(f"The OHIF web viewer was not installed: {exc}")
                return
            raise CommandError(str(exc)) from exc
