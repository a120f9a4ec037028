"""Benchmark: download a generated ~1 GB study zip from gunicorn on loopback, against ``cat``.

    .venv/bin/python bench/zip.py [--instances 2000] [--instance-kb 512] [--runs 3]
                                  [--data-dir /tmp/pacsweb-bench-zip] [--database-url URL]

It ingests the study through ``instance_ingest`` into a scratch data folder (kept, and reused by
the next run), starts ``gunicorn pacsweb.wsgi -k gthread --threads 4`` on 127.0.0.1, logs a web
user in through the login form, and downloads the study zip with ``curl -o /dev/null``. In the
same run it reads the same stored files with ``cat`` to /dev/null (the reference, page cache warm
for both). It prints the throughput of each, their ratio (target: at least 0.25x ``cat``), the
time to first byte (target: under 100 ms) and the gunicorn worker's resident memory before and
during the downloads (target: flat, whatever the zip's size).
"""

import argparse
import http.cookiejar
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from harness import free_port, ingest_ct_instance, setup_django, start

STUDY_UID = "2.25.164021935812775629148396520153371204821"
USERNAME, PASSWORD = "bench", "bench-Password-1"
MB = 1_000_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--instance-kb", type=int, default=512, help="pixel data per instance")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/pacsweb-bench-zip"))
    parser.add_argument("--database-url", default="", help="default: SQLite in the data folder")
    return parser.parse_args()


def make_study(count: int, pixel_kb: int) -> None:
    """Ingest ``count`` CT instances of one study and series (reused when already there)."""
    from studies.models import Instance

    have = Instance.objects.filter(series__study__study_uid=STUDY_UID).count()
    if have == count:
        print(f"study: reusing {count} instances in the data folder")
        return
    if have:
        sys.exit(f"the data folder holds {have} instances of the bench study; use another one")
    side = int((pixel_kb * 1024 // 2) ** 0.5)
    pixels = os.urandom(side * side * 2)
    started = time.monotonic()
    for number in range(1, count + 1):
        ingest_ct_instance(
            study_uid=STUDY_UID,
            number=number,
            side=side,
            pixels=pixels,
            patient=("BENCH^ZIP", "BENCH-ZIP"),
        )
        if number % max(count // 20, 1) == 0 or number == count:
            elapsed = time.monotonic() - started
            print(f"  ingested {number}/{count} ({number / elapsed:.0f} instances/s)", flush=True)


def start_gunicorn(env: dict[str, str], port: int) -> subprocess.Popen:
    gunicorn = Path(sys.executable).parent / "gunicorn"
    command = [str(gunicorn), "pacsweb.wsgi", "-b", f"127.0.0.1:{port}", "-k", "gthread"]
    command += ["--workers", "1", "--threads", "4", "--log-level", "warning"]
    return start(command, env, port, "gunicorn")


def log_in(base: str) -> str:
    """Log in through the login form like a browser; return the session cookie."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode(
        {"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token}
    ).encode()
    # The URL is always http://127.0.0.1:<port>, never a file: or custom scheme.
    request = urllib.request.Request(f"{base}/login/", data=form)  # noqa: S310
    opener.open(request)
    session = next((c.value for c in jar if c.name == "sessionid"), None)
    if not session:
        sys.exit("could not log in")
    return f"sessionid={session}"


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))


class RssSampler(threading.Thread):
    """Samples the worker's resident memory every 20 ms while a download runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.02)

    def stop(self) -> int:
        self.running = False
        self.join()
        return self.peak


def curl(url: str, cookie: str, output: str = "/dev/null") -> dict[str, float]:
    result = subprocess.run(
        ["curl", "-sS", "-o", output, "-H", f"Cookie: {cookie}", "-w"]
        + ["%{http_code} %{size_download} %{time_starttransfer} %{time_total}", url],
        capture_output=True,
        text=True,
        check=True,
    )
    code, size, first_byte, total = result.stdout.split()
    if code != "200":
        sys.exit(f"download failed with HTTP {code}")
    return {"size": int(size), "ttfb": float(first_byte), "total": float(total)}


def time_cat(paths: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(["cat", *paths], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    args = parse_args()
    print(f"data folder: {args.data_dir}")
    env = setup_django(args.data_dir, args.database_url)
    make_study(args.instances, args.instance_kb)

    from accounts.models import User
    from studies import storage
    from studies.models import Instance

    user, _ = User.objects.get_or_create(username=USERNAME)
    user.set_password(PASSWORD)
    user.is_active = True
    user.save()
    rows = Instance.objects.filter(series__study__study_uid=STUDY_UID)
    paths = [str(storage.absolute(p)) for p in rows.values_list("path", flat=True)]
    stored_bytes = sum(rows.values_list("size", flat=True))
    print(f"study: {len(paths)} instances, {stored_bytes / MB:.0f} MB stored")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/studies/study/{STUDY_UID}/download"
    print(f"starting gunicorn on {base} (1 worker, gthread, 4 threads)")
    server = start_gunicorn(env, port)
    try:
        cookie = log_in(base)
        worker = worker_pids(server.pid)[0]
        print("warming up: cat once, one download saved and checked with zipfile")
        time_cat(paths)
        check_path = args.data_dir / "check.zip"
        first = curl(url, cookie, str(check_path))
        with zipfile.ZipFile(check_path) as zf:
            names = zf.namelist()
            bad = zf.testzip()
        check_path.unlink()
        if len(names) != len(paths) or bad is not None:
            sys.exit(f"the downloaded zip is wrong: {len(names)} entries, first bad: {bad}")
        print(f"  zip: {first['size'] / MB:.0f} MB, {len(names)} entries, CRCs good")
        rss_before = rss_kb(worker)

        downloads, cats, peaks = [], [], []
        for run in range(1, args.runs + 1):
            cats.append(time_cat(paths))
            sampler = RssSampler(worker)
            sampler.start()
            downloads.append(curl(url, cookie))
            peaks.append(sampler.stop())
            print(
                f"  run {run}/{args.runs}: cat {stored_bytes / MB / cats[-1]:.0f} MB/s, "
                f"zip {downloads[-1]['size'] / MB / downloads[-1]['total']:.0f} MB/s, "
                f"first byte {downloads[-1]['ttfb'] * 1000:.0f} ms, "
                f"worker RSS peak {peaks[-1] / 1024:.0f} MiB",
                flush=True,
            )
        dicomdir = [curl(url + "?dicomdir=1", cookie) for _ in range(args.runs)]
        # The same server's answer time for a small page, to read the figures above against.
        pages = [curl(f"{base}/studies/", cookie) for _ in range(args.runs)]
    finally:
        server.terminate()
        server.wait(timeout=30)

    cat_rate = stored_bytes / MB / statistics.median(cats)
    zip_rate = statistics.median(d["size"] / MB / d["total"] for d in downloads)
    ttfb = [d["ttfb"] * 1000 for d in downloads]
    ttfb_dicomdir = [d["ttfb"] * 1000 for d in dicomdir]
    ttfb_page = [d["ttfb"] * 1000 for d in pages]
    print()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"machine               {os.cpu_count()} CPUs, load average {load} (1, 5, 15 min)")
    print(f"zip size              {downloads[0]['size'] / MB:.0f} MB ({len(paths)} entries)")
    print(f"cat (reference)       {cat_rate:.0f} MB/s (median of {args.runs})")
    print(f"zip over HTTP         {zip_rate:.0f} MB/s (median of {args.runs})")
    print(f"ratio                 {zip_rate / cat_rate:.2f}x cat (target >= 0.25x)")
    print(
        f"time to first byte    median {statistics.median(ttfb):.0f} ms, max {max(ttfb):.0f} ms"
        " (target < 100 ms)"
    )
    print(
        f"  search page         median {statistics.median(ttfb_page):.0f} ms "
        "(a small page from the same server, for reference)"
    )
    print(
        f"  with ?dicomdir=1    median {statistics.median(ttfb_dicomdir):.0f} ms, "
        f"max {max(ttfb_dicomdir):.0f} ms (DICOMDIR of {len(paths)} records built first)"
    )
    print(
        f"worker RSS            {rss_before / 1024:.0f} MiB before, "
        f"peak {max(peaks) / 1024:.0f} MiB during {args.runs} downloads "
        f"of {downloads[0]['size'] / MB:.0f} MB"
    )


if __name__ == "__main__":
    main()
