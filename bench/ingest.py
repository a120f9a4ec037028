"""Benchmark: C-STORE throughput of ``dicom_receiver`` against dcmtk's own ``storescp``.

Run from the repository root: ``.venv/bin/python bench/ingest.py`` (``--help`` for options).

It generates a CT set (1,000 instances of 512x512 16-bit, about 0.5 MB each) and a set of tiny
instances (a few KB) with pydicom, then sends them with N parallel dcmtk ``storescu`` processes
(one association each) to:

- dcmtk's ``storescp`` (``--fork``, writing to a temporary folder): the reference;
- ``manage.py dicom_receiver`` on a fresh SQLite data folder, and on a scratch PostgreSQL
  database, where every instance is fsynced and indexed before its Success.

Each case is measured ``--rounds`` times (3), storescp right before pacsweb in every round, and
the table shows the round with the median ratio, next to the range of the ratios: the machine
changes more between minutes than between two back-to-back runs. Each run starts from an empty
archive. It prints instances/s and MB/s for both, the ratio, the receiver's peak memory
(resident set of all its processes) and CPU, and checks that every instance sent is in the
index. ``TCP_NODELAY=1`` is set for the dcmtk tools: Debian's dcmtk leaves Nagle's
algorithm on otherwise, and every C-STORE then waits about 40 ms for a delayed ACK.
"""

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from harness import free_port, wait_for_port
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MANAGE = str(ROOT / "manage.py")
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MB = 1_000_000


@dataclass
class Result:
    seconds: float
    instances: int
    total_bytes: int
    peak_rss: int = 0
    cpu_seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.instances / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.total_bytes / MB / self.seconds


def log(message: str) -> None:
    print(message, flush=True)


def generate(folder: Path, count: int, size: int, label: str) -> list[Path]:
    """``count`` instances of one study (4 series), ``size`` x ``size`` 16-bit pixels."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
    study = generate_uid()
    series = [generate_uid() for _ in range(4)]
    paths = []
    for i in range(count):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series[i % 4]
        ds.PatientName = "BENCH^CT"
        ds.PatientID = "BENCH1"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyDate = "20240101"
        ds.StudyTime = "120000"
        ds.AccessionNumber = "BENCH1"
        ds.StudyDescription = "BENCHMARK"
        ds.Modality = "CT"
        ds.SeriesNumber = i % 4 + 1
        ds.InstanceNumber = i // 4 + 1
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelData = pixels
        path = folder / f"{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
        if (i + 1) % 200 == 0 or i + 1 == count:
            print(f"\r  generating {label}: {i + 1}/{count}", end="", flush=True)
    print(flush=True)
    return paths


def dcmtk_env() -> dict[str, str]:
    return {**os.environ, "TCP_NODELAY": "1"}


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_usage(pid: int) -> tuple[int, float]:
    """Resident memory (bytes) and CPU time (seconds) of ``pid`` and all its descendants."""
    rss, cpu = 0, 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status") as fp:
                for line in fp:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
            with open(f"/proc/{current}/stat") as fp:
                fields = fp.read().rsplit(")", 1)[1].split()
            # utime and stime, fields 14 and 15 of proc(5), counted after the command name.
            cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fp:
                    pending.extend(int(child) for child in fp.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return rss, cpu


class UsageSampler(threading.Thread):
    """Samples the receiver's memory (its peak) and CPU time while instances are sent."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stopped = pid, 0, threading.Event()
        self.cpu_start = self.cpu_end = tree_usage(pid)[1]

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            rss, self.cpu_end = tree_usage(self.pid)
            self.peak = max(self.peak, rss)


def count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def send(
    port: int, paths: list[Path], senders: int, stored: Callable[[], int], label: str
) -> float:
    """Send ``paths`` with ``senders`` parallel storescu processes; return the seconds taken."""
    slices = [paths[i::senders] for i in range(senders)]
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            ["storescu", "-aec", "PACSWEB", "127.0.0.1", str(port), *map(str, part)],
            env=dcmtk_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for part in slices
    ]
    finished = threading.Event()

    def show_progress() -> None:
        while not finished.wait(0.5):
            done = stored()
            print(f"\r  {label}: {done}/{len(paths)} stored", end="", flush=True)

    progress = threading.Thread(target=show_progress, daemon=True)
    progress.start()
    # The time ends when the last sender has its last response (its process exits).
    errors = [p.communicate()[1] for p in processes]
    seconds = time.perf_counter() - start
    finished.set()
    progress.join()
    print(f"\r  {label}: {len(paths)}/{len(paths)} sent in {seconds:.2f} s", flush=True)
    for p, error in zip(processes, errors, strict=True):
        if p.returncode != 0:
            raise SystemExit(f"storescu failed: {error.decode()[-2000:]}")
    return seconds


def run_storescp(paths: list[Path], senders: int, work: Path, label: str) -> Result:
    out = work / "storescp-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    port = free_port()
    server = subprocess.Popen(
        ["storescp", "--fork", "--max-pdu", "131072", "-od", str(out), str(port)],
        env=dcmtk_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, server, "storescp")
        seconds = send(port, paths, senders, lambda: count_files(out), label)
    finally:
        server.terminate()
        server.wait()
    stored = count_files(out)
    if stored != len(paths):
        raise SystemExit(f"storescp stored {stored} of {len(paths)} instances")
    return Result(seconds, len(paths), sum(p.stat().st_size for p in paths))


def prepare_database(kind: str, work: Path, postgres_url: str) -> dict[str, str]:
    """A fresh, migrated archive; return the environment that points the receiver at it."""
    data_dir = work / f"data-{kind}"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {**os.environ, "PACSWEB_DATA_DIR": str(data_dir), "SECRET_KEY": "bench"}
    env.pop("DATABASE_URL", None)
    if kind == "postgres":
        name = f"pacsweb_bench_{os.getpid()}"
        admin = f"{postgres_url.rstrip('/')}/postgres"
        import psycopg

        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        env["DATABASE_URL"] = f"{postgres_url.rstrip('/')}/{name}"
    subprocess.run([PYTHON, MANAGE, "migrate", "-v0"], env=env, check=True)
    return env


def drop_database(env: dict[str, str], postgres_url: str) -> None:
    url = env.get("DATABASE_URL")
    if not url:
        return
    import psycopg

    with psycopg.connect(f"{postgres_url.rstrip('/')}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}"')


@contextmanager
def index_counter(env: dict[str, str]) -> Iterator[Callable[[], int]]:
    """A function that counts the receiver's index rows, for the progress line.

    Cheaper than walking its storage folders, which would take CPU from the receiver.
    """
    url = env.get("DATABASE_URL")
    if url:
        import psycopg

        conn = psycopg.connect(url, autocommit=True)
    else:
        database = Path(env["PACSWEB_DATA_DIR"]) / "pacsweb.sqlite3"
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)
    query = "SELECT count(*) FROM studies_instance"
    try:
        yield lambda: conn.execute(query).fetchone()[0]
    finally:
        conn.close()


def indexed_count(env: dict[str, str]) -> int:
    out = subprocess.run(
        [
            PYTHON,
            MANAGE,
            "shell",
            "-c",
            "from studies.models import Instance; print(Instance.objects.count())",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def run_receiver(
    paths: list[Path],
    senders: int,
    work: Path,
    kind: str,
    processes: int | None,
    postgres_url: str,
    label: str,
) -> Result:
    env = prepare_database(kind, work, postgres_url)
    port = free_port()
    command = [PYTHON, MANAGE, "dicom_receiver", "--port", str(port), "--bind", "127.0.0.1"]
    if processes:
        command += ["--processes", str(processes)]
    server = subprocess.Popen(
        command, env={**env, "LOG_LEVEL": "WARNING"}, stdout=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, server, "dicom_receiver")
        sampler = UsageSampler(server.pid)
        sampler.start()
        with index_counter(env) as indexed:
            seconds = send(port, paths, senders, indexed, label)
        sampler.stopped.set()
        sampler.join()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    indexed = indexed_count(env)
    drop_database(env, postgres_url)
    if indexed != len(paths):
        raise SystemExit(f"the receiver indexed {indexed} of {len(paths)} instances")
    return Result(
        seconds,
        len(paths),
        sum(p.stat().st_size for p in paths),
        sampler.peak,
        sampler.cpu_end - sampler.cpu_start,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000, help="CT instances (0.5 MB each)")
    parser.add_argument("--tiny", type=int, default=1000, help="tiny instances (0 to skip)")
    parser.add_argument("--senders", default="1,4", help="parallel storescu counts for the CT set")
    parser.add_argument(
        "--databases", default="sqlite,postgres", help="comma-separated: sqlite, postgres"
    )
    parser.add_argument("--processes", type=int, help="receiver processes (default: its own)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="measurements of each case (the median is shown)"
    )
    parser.add_argument(
        "--postgres-url",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server for the scratch database",
    )
    args = parser.parse_args()
    for tool in ("storescu", "storescp"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install dcmtk")
    senders = [int(n) for n in args.senders.split(",")]
    databases = [d for d in args.databases.split(",") if d]
    if unknown := set(databases) - {"sqlite", "postgres"}:
        parser.error(f"unknown database {', '.join(sorted(unknown))}: use sqlite, postgres")
    # Both servers are measured in the same conditions; the load says what those were (other
    # work on the machine slows the receiver's fsyncs and Python threads more than storescp).
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pacsweb-bench-") as tmp:
        work = Path(tmp)
        log(f"Generating the test sets in {work}")
        sets = [("CT 512x512", generate(work / "ct", args.instances, 512, "CT"), senders)]
        if args.tiny:
            sets.append(("tiny 32x32", generate(work / "tiny", args.tiny, 32, "tiny"), [1]))
        rows = []
        for name, paths, counts in sets:
            size = sum(p.stat().st_size for p in paths) / len(paths)
            for n in counts:
                label = f"{name} ({size / 1000:.0f} KB), {n} association{'s' * (n > 1)}"
                runs: dict[str, list[tuple[Result, Result]]] = {kind: [] for kind in databases}
                for round_ in range(1, args.rounds + 1):
                    log(f"{label}, round {round_} of {args.rounds}")
                    # Each round measures the reference right before pacsweb, so that both
                    # see the same machine: the median of the rounds' ratios is reported.
                    reference = run_storescp(paths, n, work, "storescp")
                    for kind in databases:
                        result = run_receiver(
                            paths,
                            n,
                            work,
                            kind,
                            args.processes,
                            args.postgres_url,
                            f"pacsweb {kind}",
                        )
                        runs[kind].append((reference, result))
                rows += [(label, kind, pairs) for kind, pairs in runs.items()]
        log("")
        log(
            f"receiver: {args.processes or 2 * os.cpu_count()} processes; machine load average "
            f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
        )
        log(
            f"{'set':<38} {'db':<9} {'storescp inst/s':>15} {'MB/s':>7} "
            f"{'pacsweb inst/s':>15} {'MB/s':>7} {'ratio':>6} {'(range)':>11} "
            f"{'peak RSS':>9} {'CPU/inst':>9} {'cores':>5}"
        )
        for label, kind, pairs in rows:
            ratios = [res.per_second / ref.per_second for ref, res in pairs]
            ref, res = pairs[ratios.index(statistics.median_low(ratios))]
            log(
                f"{label:<38} {kind:<9} {ref.per_second:>15.0f} {ref.mb_per_second:>7.1f} "
                f"{res.per_second:>15.0f} {res.mb_per_second:>7.1f} "
                f"{res.per_second / ref.per_second:>6.2f} {min(ratios):>5.2f}-{max(ratios):<5.2f} "
                f"{max(r.peak_rss for _, r in pairs) / 2**20:>6.0f} MB "
                f"{res.cpu_seconds / res.instances * 1000:>6.1f} ms "
                f"{res.cpu_seconds / res.seconds:>5.2f}"
            )


if __name__ == "__main__":
    main()
