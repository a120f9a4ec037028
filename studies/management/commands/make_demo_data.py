"""``manage.py make_demo_data [--patients N] [--seed S]``: fill the archive with demo studies.

The studies (see ``studies.demo_data``) go through ``studies.services.instance_ingest`` like any
other file, with source "demo". The same seed gives the same studies, so running the command
twice stores them once. The default (10 patients) is about 250 MB.
"""

import datetime
import io
import time
from collections import Counter

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from pacsweb.lib.progress import Progress, human_bytes
from studies.demo_data import DEFAULT_UNTIL, DemoPlanner, Sizes
from studies.models import Instance
from studies.services import Status, instance_ingest


def _until(value: str) -> datetime.date:
    if value == "today":
        return timezone.localdate()
    try:
        return datetime.date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--until: {value!r} is not a date (YYYY-MM-DD) or 'today'") from exc


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Generate realistic synthetic studies (CT, MR, CR, DX, US cine, secondary capture) with "
        "varied names, character sets, dates and institutions, and store them in the archive."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patients", type=_positive, default=10, help="default 10")
        parser.add_argument("--seed", type=int, default=1, help="default 1; same seed, same data")
        parser.add_argument(
            "--matrix",
            type=_positive,
            default=512,
            help="CT/MR image size in pixels (default 512; radiographs are twice that)",
        )
        parser.add_argument(
            "--slices",
            type=_positive,
            default=None,
            help="slices per CT/MR series and frames per ultrasound loop (default: a few dozen)",
        )
        parser.add_argument(
            "--until",
            default=DEFAULT_UNTIL.isoformat(),
            help=f"date of the newest studies, YYYY-MM-DD or 'today' (default {DEFAULT_UNTIL})",
        )

    def handle(self, *args: object, **options: object) -> None:
        if options["matrix"] < 16:
            raise CommandError("--matrix must be at least 16")
        planner = DemoPlanner(
            seed=options["seed"],
            sizes=Sizes(matrix=options["matrix"], slices=options["slices"]),
            until=_until(options["until"]),
        )
        patients = planner.patients(options["patients"])
        total = sum(series.count for p in patients for s in p.studies for series in s.series)
        studies = sum(len(p.studies) for p in patients)
        self.stdout.write(
            f"Making {total:,} instances in {studies} studies for {len(patients)} patients "
            f"(seed {options['seed']})."
        )
        self.stderr.ending = ""
        self.stderr.style_func = None
        progress = Progress(self.stderr, title="demo", total=total)
        started = time.monotonic()
        outcomes: Counter[Status] = Counter()
        problems: Counter[str] = Counter()
        written = 0
        for done, ds in enumerate(planner.instances(patients), start=1):
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            written += buffer.tell()
            outcome = instance_ingest(
                file=buffer.getvalue(),
                source=Instance.Source.DEMO,
                source_detail=f"make_demo_data --seed {options['seed']}",
            )
            outcomes[outcome.status] += 1
            if not outcome.ok:
                problems[outcome.reason] += 1
                progress.line(f"not stored: {ds.PatientName} {ds.Modality}: {outcome.reason}")
                if outcome.out_of_space:
                    break
            progress.update(done, note=f"{human_bytes(written)}  {ds.PatientName}")
        progress.finish(sum(outcomes.values()))
        self.stdout.write(
            f"Done in {time.monotonic() - started:.1f} s: {outcomes[Status.STORED]:,} stored, "
            f"{outcomes[Status.DUPLICATE]:,} already in the archive "
            f"({human_bytes(written)} of DICOM)."
        )
        for patient in patients:
            kinds = ", ".join(study.description for study in patient.studies)
            self.stdout.write(f"  {patient.patient_id}  {patient.person.name}: {kinds}")
        if problems:
            for reason, count in problems.most_common():
                self.stdout.write(f"  not stored: {count:,} x {reason}")
            raise CommandError("some demo instances could not be stored")
