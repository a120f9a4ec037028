"""DICOMweb benchmark against gunicorn on the loopback interface.

    .venv/bin/python bench/dicomweb.py [--studies 100000] [--instances 300] [--clients 4]

It builds a throwaway archive in a temporary folder (SQLite there, or the empty database named by
BENCH_DATABASE_URL), serves it with gunicorn as deployed (deploy/gunicorn.conf.py), then
measures, each beside a reference taken in the same run:

1. WADO-RS metadata of a 300-instance CT study (512x512, 16-bit), against building the same
   JSON from the files with pydicom (what a server without stored metadata does per request).
2. Frames per second when 4 clients fetch every frame of that study as OHIF does, against
   4 threads reading the same bytes straight from disk.
3. QIDO-RS latency of OHIF's study-list query (limit=101, includefield, a name filter) over
   100,000 studies, against the same search run in-process through the ORM.

Targets (issue 7): metadata < 50 ms, >= 500 frames/s, QIDO p95 < 80 ms.
"""

import argparse
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OHIF_INCLUDE = "00081030%2C00080060%2C00080090%2C00100030"
SURNAMES = [
    "SMITH", "MÜLLER", "GARCÍA", "NGUYEN", "ROSSI", "DUBOIS", "KOWALSKI", "JOHNSON", "SILVA",
    "ANDERSSON", "PAPADOPOULOS", "O'BRIEN", "YILMAZ", "NOVAK", "HANSEN", "TANAKA", "KIM",
    "IVANOV", "FERNÁNDEZ", "SCHMIDT", "BROWN", "LEFÈVRE", "JENSEN", "HORVÁTH", "WEBER",
]  # fmt: skip
GIVEN = ["ANNA", "JOHN", "MARÍA", "LI", "PAUL", "SOFIA", "AHMED", "EVA", "JAN", "LUCA", "NINA"]
MODALITIES = ["CT", "MR", "CR", "US", "DX", "MG", "PT", "NM"]


def progress(message: str) -> None:
    print(message, flush=True)


def setup_django(data_dir: Path) -> None:
    os.environ["PACSWEB_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("SECRET_KEY", "bench-secret-key")
    if os.environ.get("BENCH_DATABASE_URL"):
        os.environ["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    os.environ["DJANGO_SETTINGS_MODULE"] = "pacsweb.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def ct_dataset(study_uid: str, series_uid: str, index: int, pixels: bytes):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.PatientName, ds.PatientID = "BENCH^CT", "BENCH-CT"
    ds.PatientBirthDate, ds.PatientSex = "19600101", "F"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20250101", "120000", "1"
    ds.AccessionNumber, ds.StudyDescription = "BENCH1", "CT CHEST ABDOMEN"
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "CT", 1, "AXIAL 1MM"
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [-250.0, -250.0, float(index)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [0.98, 0.98], 1.0
    ds.Rows = ds.Columns = 512
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelData = pixels
    return ds


def make_ct_study(count: int) -> str:
    import io

    import numpy as np
    from pydicom.uid import generate_uid

    from studies.models import Instance
    from studies.services import Status, instance_ingest

    study_uid, series_uid = generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 4096, 512 * 512, dtype=np.uint16).tobytes()
        buffer = io.BytesIO()
        ct_dataset(study_uid, series_uid, index, pixels).save_as(buffer, enforce_file_format=True)
        outcome = instance_ingest(file=buffer.getvalue(), source=Instance.Source.IMPORT)
        assert outcome.status == Status.STORED, outcome
        if (index + 1) % 50 == 0:
            progress(f"  ingested {index + 1}/{count} CT instances")
    return study_uid


def make_many_studies(total: int) -> None:
    """Index rows for ``total`` studies through ingest's own field mapping, in bulk."""
    from django.db import transaction
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    from studies.models import Patient, Series, Study
    from studies.services import _index_fields

    rng = random.Random(7)
    patients_total = max(1, total * 2 // 5)
    batch = 5000
    patient_pks: dict[str, int] = {}
    for start in range(0, total, batch):
        studies, series_rows, patients = [], [], {}
        for number in range(start, min(total, start + batch)):
            patient_number = rng.randrange(patients_total)
            rng_patient = random.Random(patient_number)
            ds = Dataset()
            ds.PatientName = f"{rng_patient.choice(SURNAMES)}^{rng_patient.choice(GIVEN)}"
            ds.PatientID = f"P{patient_number:07d}"
            ds.PatientBirthDate = (
                f"{1930 + rng_patient.randrange(90)}0{1 + rng_patient.randrange(9)}15"
            )
            ds.PatientSex = rng_patient.choice("MFO")
            ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
            ds.SOPInstanceUID, ds.SOPClassUID = generate_uid(), "1.2.840.10008.5.1.4.1.1.2"
            ds.StudyDate = (
                f"{2005 + rng.randrange(20)}{1 + rng.randrange(12):02d}{1 + rng.randrange(28):02d}"
            )
            ds.StudyTime = f"{rng.randrange(24):02d}{rng.randrange(60):02d}00"
            ds.AccessionNumber = f"A{number:08d}"
            ds.StudyDescription = rng.choice(["CT HEAD", "MR KNEE", "CHEST PA", "US ABDOMEN"])
            ds.ReferringPhysicianName = f"{rng.choice(SURNAMES)}^{rng.choice(GIVEN)}"
            ds.Modality = rng.choice(MODALITIES)
            ds.SeriesNumber = 1
            fields = _index_fields(ds, has_pixel_data=False)
            key = fields["patient"]["key"]
            if key not in patient_pks:
                patients[key] = Patient(**fields["patient"])
            studies.append((key, fields))
        with transaction.atomic():
            for patient in Patient.objects.bulk_create(patients.values(), batch_size=1000):
                patient_pks[patient.key] = patient.pk
            if not all(patient.pk for patient in patients.values()):
                patient_pks.update(
                    Patient.objects.filter(key__in=list(patients)).values_list("key", "pk")
                )
            study_rows = [
                Study(
                    patient_id=patient_pks[key],
                    modalities=fields["series"]["modality"],
                    num_series=1,
                    num_instances=100,
                    **fields["study"],
                )
                for key, fields in studies
            ]
            created = Study.objects.bulk_create(study_rows, batch_size=1000)
            if not all(study.pk for study in created):
                by_uid = dict(
                    Study.objects.filter(study_uid__in=[s.study_uid for s in created]).values_list(
                        "study_uid", "pk"
                    )
                )
                for study in created:
                    study.pk = by_uid[study.study_uid]
            for study, (_key, fields) in zip(created, studies, strict=True):
                series_rows.append(Series(study_id=study.pk, num_instances=100, **fields["series"]))
            Series.objects.bulk_create(series_rows, batch_size=1000)
        progress(f"  indexed {min(total, start + batch):,}/{total:,} studies")


def session_cookie() -> str:
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.create_user(username="bench", password=secrets.token_urlsafe())
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "accounts.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def start_gunicorn(port: int, workers: int | None) -> subprocess.Popen:
    """gunicorn as deployed: deploy/gunicorn.conf.py, its workers, threads and access log."""
    from pacsweb.models import ServerSetup

    ServerSetup.objects.update_or_create(pk=1, defaults={"web_port": port})
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PACSWEB_BIND": "127.0.0.1",
        # Only the start-up lines are left out of the bench's output.
        "GUNICORN_CMD_ARGS": "--log-level warning",
    }
    if workers is not None:
        env["PACSWEB_WEB_WORKERS"] = str(workers)
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    # The access log is written as in production (there to the journal), here to /dev/null.
    process = subprocess.Popen(
        [gunicorn, "-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port, process, "gunicorn")
    return process


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def timed(function, repeat: int) -> list[float]:
    results = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        results.append((time.perf_counter() - start) * 1000)
    return results


def bench_metadata(base: str, session, study_uid: str) -> None:
    import json

    from pydicom import dcmread

    from studies import storage
    from studies.models import Instance

    url = f"{base}/dicomweb/studies/{study_uid}/metadata"
    headers = {"Accept": "application/dicom+json"}

    def fetch() -> None:
        # The body is checked once below, not parsed in the timed loop (the client's work).
        session.get(url, headers=headers).raise_for_status()

    assert (
        len(session.get(url, headers=headers).json())
        == Instance.objects.filter(series__study__study_uid=study_uid).count()
    )
    timed(fetch, 3)
    served = timed(fetch, 30)
    paths = list(
        Instance.objects.filter(series__study__study_uid=study_uid).values_list("path", flat=True)
    )

    def from_files() -> None:
        datasets = [
            dcmread(storage.absolute(p), stop_before_pixels=True).to_json_dict(
                bulk_data_element_handler=lambda _element: "bulk", suppress_invalid_tags=True
            )
            for p in paths
        ]
        json.dumps(datasets)

    reference = timed(from_files, 3)
    median, ref = statistics.median(served), statistics.median(reference)
    print(
        f"metadata, {len(paths)} instances: median {median:.1f} ms, p95 {percentile(served, 0.95):.1f} ms"
        f" (target < 50 ms); pydicom from the files {ref:.0f} ms; {ref / median:.1f}x faster"
    )


def server_cpu_seconds(master_pid: int) -> float:
    """User plus system CPU time of gunicorn's master and workers so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [master_pid]
    for task in Path(f"/proc/{master_pid}/task").iterdir():
        children = (task / "children").read_text().split()
        pids.extend(int(pid) for pid in children)
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def bench_frames(port: int, cookie: str, study_uid: str, clients: int, master_pid: int) -> None:
    from studies import storage
    from studies.models import Instance

    rows = list(
        Instance.objects.filter(series__study__study_uid=study_uid).values_list(
            "series__series_uid", "sop_uid", "path", "frames"
        )
    )
    paths = [
        f"/dicomweb/studies/{study_uid}/series/{se}/instances/{sop}/frames/1"
        for se, sop, _path, _frames in rows
    ]
    accept = "multipart/related; type=application/octet-stream; transfer-syntax=*"
    errors: list[str] = []

    def client() -> None:
        # HTTP/1.1 with keep-alive, as a browser fetches frames, on a plain socket: the client
        # runs on the server's two cores, and http.client's header parsing cost it more CPU
        # than a browser spends. Every byte is still received and the status and length checked.
        buffer = bytearray(4 << 20)
        view = memoryview(buffer)
        sock = None
        for path in paths:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n"
                f"Cookie: sessionid={cookie}\r\n\r\n".encode("ascii")
            )
            filled = 0
            while (end := buffer.find(b"\r\n\r\n", 0, filled)) < 0:
                received = sock.recv_into(view[filled:])
                if not received:
                    raise RuntimeError(f"connection closed before the headers of {path}")
                filled += received
            status_line, *lines = bytes(view[:end]).decode("latin-1").split("\r\n")
            fields = {}
            for line in lines:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip().lower()
            total = end + 4 + int(fields["content-length"])
            while filled < total:
                received = sock.recv_into(view[filled:total])
                if not received:
                    raise RuntimeError(f"connection closed in the body of {path}")
                filled += received
            if status_line.split()[1] != "200" or total - end - 4 < 512 * 512 * 2:
                errors.append(f"{status_line} {path}")
            if fields.get("connection") == "close":
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def disk_reader() -> None:
        for _se, _sop, path, frames in rows:
            with storage.open_file(path) as fp:
                for offset, length in frames[0]:
                    fp.seek(offset)
                    assert len(fp.read(length)) == length

    def run(target) -> float:
        threads = [threading.Thread(target=target) for _ in range(clients)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return len(paths) * clients / (time.perf_counter() - start)

    run(disk_reader)
    disk = run(disk_reader)
    run(client)
    cpu_before, client_before = server_cpu_seconds(master_pid), time.process_time()
    served = run(client)
    frames = len(paths) * clients
    cpu_per_frame = (server_cpu_seconds(master_pid) - cpu_before) * 1000 / frames
    client_per_frame = (time.process_time() - client_before) * 1000 / frames
    if errors:
        raise RuntimeError(f"{len(errors)} frame requests failed, e.g. {errors[0]}")
    print(
        f"frames, {clients} clients x {len(paths)} frames of 512 KiB: {served:.0f} frames/s"
        f" ({served * 0.5:.0f} MiB/s; target >= 500), server CPU {cpu_per_frame:.2f} ms a frame"
        f" ({2000 / cpu_per_frame:.0f} frames/s if both cores served only frames), client CPU"
        f" {client_per_frame:.2f} ms a frame;"
        f" reading the same frames from disk: {disk:.0f} frames/s; served/disk = {served / disk:.2f}"
    )


def bench_qido(base: str, session, master_pid: int) -> None:
    from studies.selectors import StudyQuery, studies_search

    names = ["smith", "müller", "garc", "an", "o'b", "tanaka", "zzz"]
    urls = [
        f"{base}/dicomweb/studies?limit=101&offset=0&fuzzymatching=false"
        f"&includefield={OHIF_INCLUDE}&PatientName=*{name}*"
        for name in names
    ] + [
        f"{base}/dicomweb/studies?limit=101&offset=0&fuzzymatching=false&includefield={OHIF_INCLUDE}"
    ]
    headers = {"Accept": "application/dicom+json"}
    for url in urls:
        session.get(url, headers=headers).raise_for_status()
    latencies = []
    cpu_before = server_cpu_seconds(master_pid)
    for _ in range(25):
        for url in urls:
            start = time.perf_counter()
            response = session.get(url, headers=headers)
            latencies.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
    cpu_per_query = (server_cpu_seconds(master_pid) - cpu_before) * 1000 / len(latencies)

    def orm() -> None:
        for name in names:
            list(studies_search(StudyQuery(patient_name=f"*{name}*"))[:101])
        list(studies_search(StudyQuery())[:101])

    reference = [t / len(urls) for t in timed(orm, 5)]
    p95 = percentile(latencies, 0.95)
    print(
        f"QIDO-RS studies (OHIF list query, limit=101, name filters): median "
        f"{statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms (target < 80 ms);"
        f" the same search in-process through the ORM: {statistics.median(reference):.1f} ms"
        f" per query; served/ORM = {statistics.median(latencies) / statistics.median(reference):.2f};"
        f" server CPU {cpu_per_query:.1f} ms a query"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--workers", type=int, help="gunicorn worker processes (default: deploy/gunicorn.conf.py's)"
    )
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="pacsweb-bench-dicomweb-"))
    gunicorn = None
    try:
        progress(f"Archive in {data_dir}")
        setup_django(data_dir)
        progress(f"Ingesting a {args.instances}-instance CT study (512x512, 16-bit) ...")
        study_uid = make_ct_study(args.instances)
        progress(f"Indexing {args.studies:,} more studies ...")
        make_many_studies(args.studies)
        from django.db import connection

        if connection.vendor == "postgresql":
            # What autovacuum does soon after a bulk load: without statistics the planner
            # guesses three patients per name and picks its plans accordingly.
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        cookie = session_cookie()
        connection.close()
        port = free_port()
        progress(f"Starting gunicorn with deploy/gunicorn.conf.py on 127.0.0.1:{port} ...")
        gunicorn = start_gunicorn(port, args.workers)

        import requests

        session = requests.Session()
        session.cookies.set("sessionid", cookie)
        base = f"http://127.0.0.1:{port}"
        print()
        bench_metadata(base, session, study_uid)
        bench_frames(port, cookie, study_uid, args.clients, gunicorn.pid)
        bench_qido(base, session, gunicorn.pid)
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
