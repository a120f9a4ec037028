"""Load test: 20 clients browsing while 4 download study zips, against gunicorn on loopback.

    .venv/bin/python bench/load.py [--seconds 30] [--browsers 20] [--downloaders 4]
                                   [--data-dir /tmp/pacsweb-bench-load] [--database-url URL]

The server is started the way a deployment starts it (``manage.py run_web``: gunicorn with
deploy/gunicorn.conf.py, its gthread workers and threads), on a scratch data folder filled with
demo studies and one ~200 MB study to download. The workers are warmed up first (every page
served on several connections, unmeasured). Then one client browses alone (the unloaded
reference); then ``--browsers`` client processes, all logged in before the clock starts, browse
(search, patient, study and series pages) while ``--downloaders`` processes download the big
study's zip over and over, for ``--seconds``, each at most at ``--download-rate`` (on loopback an
unlimited client would take the CPU a real network leaves free; physicians download over a line,
not loopback). It prints page latency (median, p95) unloaded and loaded, their ratio (target:
p95 within 3x), download throughput, the CPU that server, clients and other work took in each
phase, and every error (target: none). Loopback only; bounded in time and count.
"""

import argparse
import concurrent.futures
import http.client
import multiprocessing
import os
import random
import re
import statistics
import subprocess
import sys
import time
import urllib.parse
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from harness import free_port, ingest_ct_instance, setup_django, start

USERNAME, PASSWORD = "loadtest", "Load-test-Password-1"
BIG_STUDY = "2.25.297350124567018462237816904213859911401"
MB = 1_000_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--browsers", type=int, default=20)
    parser.add_argument("--downloaders", type=int, default=4)
    parser.add_argument(
        "--download-rate",
        default="25M",
        help="bytes/s per downloading client (curl --limit-rate; a 200 Mbit/s line by default)",
    )
    parser.add_argument(
        "--think",
        type=float,
        default=1.0,
        help="mean seconds a browsing client waits between pages",
    )
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/pacsweb-bench-load"))
    parser.add_argument("--database-url", default="", help="default: SQLite in the data folder")
    return parser.parse_args()


def prepare(args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    """Fill the scratch archive once; return the server's environment and page paths to visit."""
    env = setup_django(args.data_dir, args.database_url)
    from django.core.management import call_command

    from accounts.models import User
    from pacsweb.models import ServerSetup
    from studies.models import Patient, Series, Study

    if not Study.objects.exclude(study_uid=BIG_STUDY).exists():
        print("filling the archive with demo studies ...", flush=True)
        call_command("make_demo_data", patients=12, seed=7, matrix=128, slices=12)
    if not Study.objects.filter(study_uid=BIG_STUDY).exists():
        print("ingesting the study to download (200 x 1 MB) ...", flush=True)
        ingest_big_study()
    user, _ = User.objects.get_or_create(username=USERNAME)
    user.set_password(PASSWORD)
    user.save()
    setup = ServerSetup.get()
    setup.web_port = free_port()
    setup.ssl_enabled = False
    setup.save()
    env["PORT"] = str(setup.web_port)

    pages = ["/studies/", "/studies/?patient_name=a*", "/studies/?modality=CT"]
    pages += [f"/studies/patient/{pk}/" for pk in Patient.objects.values_list("pk", flat=True)[:10]]
    pages += [
        f"/studies/study/{urllib.parse.quote(uid)}/"
        for uid in Study.objects.exclude(study_uid=BIG_STUDY).values_list("study_uid", flat=True)[
            :10
        ]
    ]
    pages += [
        f"/studies/series/{urllib.parse.quote(uid)}/"
        for uid in Series.objects.exclude(study__study_uid=BIG_STUDY).values_list(
            "series_uid", flat=True
        )[:10]
    ]
    return env, pages


def ingest_big_study() -> None:
    pixels = os.urandom(724 * 724 * 2)
    for number in range(1, 201):
        ingest_ct_instance(
            study_uid=BIG_STUDY,
            number=number,
            side=724,
            pixels=pixels,
            patient=("LOAD^TEST", "LOAD-1"),
        )


def start_server(env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "manage.py", "run_web"]
    return start(command, {**env, "PACSWEB_BIND": "127.0.0.1"}, int(env["PORT"]), "the web server")


def log_in(port: int) -> str:
    """Log in through the login form like a browser; return the Cookie header value."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/login/")
    response = conn.getresponse()
    page = response.read().decode()
    csrf = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie")).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode(
        {"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    conn.request(
        "POST",
        "/login/",
        body=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf}",
            "Referer": f"http://127.0.0.1:{port}/login/",
        },
    )
    response = conn.getresponse()
    response.read()
    session = re.search(r"sessionid=([^;]+)", response.getheader("Set-Cookie") or "")
    if response.status != 302 or not session:
        sys.exit(f"could not log in (HTTP {response.status})")
    return f"sessionid={session.group(1)}"


def browse(
    port: int,
    pages: list[str],
    seconds: float,
    think: float,
    offset: int,
    cookie: str,
    count: int = 10_000,
) -> tuple[list[float], list[str]]:
    """One client visits ``count`` pages in turn or until the time is up; returns latencies and
    errors.

    Between pages it waits ``think`` seconds on average, as a person reading a page does. Its
    first page comes after a random part of that wait: people do not all click at the same
    instant, and clients released together would otherwise send twenty pages at once.
    """
    rng = random.Random(offset)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies, errors = [], []
    deadline = time.monotonic() + seconds
    time.sleep(rng.uniform(0, think))
    i = offset
    while time.monotonic() < deadline and len(latencies) < count:
        path = pages[i % len(pages)]
        i += 1
        started = time.perf_counter()
        try:
            conn.request("GET", path, headers={"Cookie": cookie})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(f"{path}: HTTP {response.status}")
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{path}: {exc!r}")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies.append(time.perf_counter() - started)
        time.sleep(rng.uniform(0.5, 1.5) * think)
    return latencies, errors


def browser(
    port: int,
    pages: list[str],
    seconds: float,
    think: float,
    offset: int,
    ready: Barrier,
    results: Queue,
) -> None:
    """A browsing client process: logs in, waits for every client to be ready, then browses.

    Logging in hashes the password on purpose slowly (PBKDF2, 0.66 s of CPU here), so
    twenty logins at once fill both cores for seconds: they are done before the clock starts,
    or the figures would measure a login storm rather than browsing beside downloads.
    """
    cookie = log_in(port)
    ready.wait()
    latencies, errors = browse(port, pages, seconds, think, offset, cookie)
    results.put(("pages", latencies, errors))


def download(port: int, seconds: float, rate: str, ready: Barrier, results: Queue) -> None:
    """One client downloading the big study's zip over and over until the time is up."""
    cookie = log_in(port)
    ready.wait()
    url = f"http://127.0.0.1:{port}/studies/study/{BIG_STUDY}/download"
    sizes, times, errors = [], [], []
    deadline = time.monotonic() + seconds
    # Downloads, too, start at moments of their own rather than all at once (random is
    # reseeded in each forked process).
    time.sleep(random.uniform(0, 1))
    while time.monotonic() < deadline and len(sizes) < 1000:
        result = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "--limit-rate", rate, "-H", f"Cookie: {cookie}"]
            + ["-w", "%{http_code} %{size_download} %{time_total}", url],
            capture_output=True,
            text=True,
            check=False,
        )
        fields = result.stdout.split()
        if result.returncode != 0 or len(fields) != 3 or fields[0] != "200":
            errors.append(f"download: curl {result.returncode} {result.stdout} {result.stderr}")
            continue
        sizes.append(int(fields[1]))
        times.append(float(fields[2]))
    results.put(("downloads", (sizes, times), errors))


def warm_up(port: int, pages: list[str], cookie: str, workers: int) -> None:
    """Visit every page on several connections at once, so that every worker process has served
    each kind of page before anything is measured.

    A worker thread's first pages compile templates and open its database connection; without
    this, those slower first requests land in whichever phase reaches a worker first.
    """
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for _ in range(3):
            list(
                pool.map(
                    lambda n: browse(port, pages, 60, 0, n, cookie, len(pages)), range(workers)
                )
            )


def cpu_seconds(server_pid: int) -> tuple[float, float, float, float]:
    """CPU seconds so far of the server (master and workers), of this benchmark (its own process
    and finished client processes), and of the whole machine; and the time they were read at.

    The machine is shared: what other work takes is printed with the figures, so that a slow run
    can be told from a slow server.
    """
    tick = os.sysconf("SC_CLK_TCK")
    server = 0.0
    for pid in [
        server_pid,
        *Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split(),
    ]:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        server += (int(fields[11]) + int(fields[12])) / tick
    times = os.times()
    clients = times.user + times.system + times.children_user + times.children_system
    busy = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    # user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    machine = sum(int(v) for i, v in enumerate(busy[:8]) if i not in (3, 4)) / tick
    return server, clients, machine, time.monotonic()


def cpu_used(server_pid: int, before: tuple[float, float, float, float]) -> str:
    """The cores that server, clients and other work took on average since ``before``."""
    server, clients, machine, seconds = (
        a - b for a, b in zip(cpu_seconds(server_pid), before, strict=True)
    )
    other = machine - server - clients
    return (
        f"server {server / seconds:.2f}, clients {clients / seconds:.2f}, "
        f"other work on the machine {other / seconds:.2f}"
    )


def summary(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.95) - 1)]


def main() -> None:
    args = parse_args()
    env, pages = prepare(args)
    port = int(env["PORT"])
    server = start_server(env)
    print(f"web server on http://127.0.0.1:{port}/ ({len(pages)} pages in the browsing loop)")
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    ready = context.Barrier(args.browsers + args.downloaders + 1)
    try:
        cookie = log_in(port)
        warm_up(port, pages, cookie, 4 * os.cpu_count())
        print(f"unloaded: 1 client browsing for {args.seconds / 2:.0f} s ...", flush=True)
        # Alone, the client needs no think time: its latencies are the reference either way.
        unloaded_before = cpu_seconds(server.pid)
        alone, errors = browse(port, pages, args.seconds / 2, 0.05, 0, cookie)
        unloaded_cpu = cpu_used(server.pid, unloaded_before)
        print(
            f"loaded: {args.browsers} clients browsing and {args.downloaders} downloading "
            f"for {args.seconds:.0f} s (logging them in first) ...",
            flush=True,
        )
        workers = [
            context.Process(
                target=browser, args=(port, pages, args.seconds, args.think, n, ready, results)
            )
            for n in range(args.browsers)
        ] + [
            context.Process(
                target=download, args=(port, args.seconds, args.download_rate, ready, results)
            )
            for _ in range(args.downloaders)
        ]
        for worker in workers:
            worker.start()
        ready.wait(timeout=300)
        loaded_before = cpu_seconds(server.pid)
        loaded, sizes, times = [], [], []
        for _ in workers:
            kind, data, worker_errors = results.get(timeout=args.seconds + 600)
            errors += worker_errors
            if kind == "pages":
                loaded += data
            else:
                sizes += data[0]
                times += data[1]
        for worker in workers:
            worker.join()
        loaded_cpu = cpu_used(server.pid, loaded_before)
    finally:
        server.send_signal(2)
        server.wait(timeout=60)

    alone_median, alone_p95 = summary(alone)
    loaded_median, loaded_p95 = summary(loaded)
    print()
    print(
        f"pages unloaded: {len(alone)} requests, median {alone_median * 1000:.1f} ms, p95 {alone_p95 * 1000:.1f} ms"
    )
    print(
        f"pages loaded:   {len(loaded)} requests, median {loaded_median * 1000:.1f} ms, p95 {loaded_p95 * 1000:.1f} ms"
    )
    print(f"p95 loaded / unloaded: {loaded_p95 / alone_p95:.2f}x (target: at most 3x)")
    if sizes:
        print(
            f"zip downloads: {len(sizes)} complete, {sum(sizes) / MB:.0f} MB, "
            f"{sum(sizes) / MB / sum(times):.0f} MB/s each on average"
        )
    for phase, used in (("unloaded", unloaded_cpu), ("loaded", loaded_cpu)):
        print(f"CPU {phase}, in cores of {os.cpu_count()}: {used}")
    print(f"errors: {len(errors)} (target: 0)")
    for error in errors[:20]:
        print(f"  {error}")


if __name__ == "__main__":
    main()
