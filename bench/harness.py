"""What the benchmarks share: a scratch pacsweb on its own data folder, and servers on loopback."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def setup_django(data_dir: Path, database_url: str = "") -> dict[str, str]:
    """Set Django up on ``data_dir`` (migrated, static files collected); return the environment.

    The same environment is given to the servers a benchmark starts, so they use this archive.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "PACSWEB_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url or f"sqlite:///{data_dir / 'bench.sqlite3'}",
        "SECRET_KEY": "bench-secret-key-not-for-production",
        "DJANGO_SETTINGS_MODULE": "pacsweb.settings",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    # The pages (the login form) need the static files' manifest, as in a deployment.
    call_command("collectstatic", interactive=False, verbosity=0)
    return env


def ingest_ct_instance(
    *, study_uid: str, number: int, side: int, pixels: bytes, patient: tuple[str, str]
) -> None:
    """Ingest instance ``number`` of a CT study's one series (``side`` x ``side``, 16-bit)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.uid import ExplicitVRLittleEndian

    from studies.models import Instance
    from studies.services import Status, instance_ingest

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, f"{study_uid}.1"
    ds.SOPInstanceUID = f"{study_uid}.1.{number}"
    ds.PatientName, ds.PatientID = patient
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240115", "101500", "1"
    ds.StudyDescription = "CT for a benchmark"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, number
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels
    buffer = DicomBytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    outcome = instance_ingest(file=buffer.getvalue(), source=Instance.Source.DEMO)
    if outcome.status != Status.STORED:
        sys.exit(f"ingest failed: {outcome}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], env: dict[str, str], port: int, name: str) -> subprocess.Popen:
    """Start a server process and return once it accepts connections on ``port``."""
    process = subprocess.Popen(command, cwd=BASE_DIR, env={**os.environ, **env})
    wait_for_port(port, process, name)
    return process


def wait_for_port(port: int, process: subprocess.Popen, name: str) -> None:
    """Return once ``process`` accepts connections on ``port``; exit if it ends or takes 60 s."""
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            sys.exit(f"{name} exited (status {process.returncode}) before opening its port")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                sys.exit(f"{name} did not open its port")
            time.sleep(0.05)
