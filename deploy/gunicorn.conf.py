"""gunicorn configuration for pacsweb: the web port and SSL come from the admin's server setup.

Start it with ``python manage.py run_web`` (or ``gunicorn -c deploy/gunicorn.conf.py``, as the
systemd unit does). The server setup is read through ``manage.py show_server_setup`` in a child
process, so that Django is imported only in the workers, with the SSL switch in their environment.
"""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _server_setup() -> dict:
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "show_server_setup"],
        capture_output=True,
        text=True,
        check=False,
        cwd=BASE_DIR,
    )
    if result.returncode != 0:
        sys.exit(f"pacsweb: cannot read the server setup:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


setup = _server_setup()
if setup["port"] == 0:
    sys.exit(
        "pacsweb: the web module is disabled (web port 0 in the server setup). "
        "Set a web port in the admin's HTTP server setup to start it."
    )
if setup["ssl_requested"] and not setup["ssl"]:
    sys.exit("pacsweb: SSL is on in the server setup, but no certificate and key are uploaded.")

wsgi_app = "pacsweb.wsgi:application"
chdir = str(BASE_DIR)
bind = [f"{os.environ.get('PACSWEB_BIND', '0.0.0.0')}:{setup['port']}"]  # noqa: S104 - a server.
if setup["ssl"]:
    # Only TLS is spoken on the port: a plain http:// request fails at the handshake.
    certfile = setup["certfile"]
    keyfile = setup["keyfile"]
    os.environ["PACSWEB_SSL"] = "1"
    if setup["server_name"]:
        os.environ.setdefault("ALLOWED_HOSTS", setup["server_name"])
else:
    os.environ["PACSWEB_SSL"] = "0"

# Threads: a worker serving a long zip download keeps answering quick pages on its other threads.
worker_class = "gthread"
# Two processes per core with four threads each: a page waits less for the GIL behind other
# requests than with fewer, busier processes when many arrive at once (twenty logins at once:
# loaded page p95 71 ms with 4 x 4 against 120 ms with 2 x 8 on two cores); in steady browsing
# beside four downloads both give 22 ms (bench/load.py).
workers = int(os.environ.get("PACSWEB_WEB_WORKERS", 2 * multiprocessing.cpu_count()))
threads = int(os.environ.get("PACSWEB_WEB_THREADS", 4))
# gthread's timeout is the worker's heartbeat, not a limit on one request: a 2 GB download or
# upload on one thread is not cut off while the worker's main loop keeps beating.
timeout = 120
graceful_timeout = 30
keepalive = 5
# Uploads stream to temporary files in the data folder (Django's upload handlers), not memory.
limit_request_field_size = 16384

accesslog = "-"
errorlog = "-"
# key=value lines, easy to grep. The path is logged without its query string: patient links carry
# their token there, and searches carry patient names.
access_log_format = (
    'access remote=%(h)s method=%(m)s path="%(U)s" status=%(s)s bytes=%(B)s '
    'duration_ms=%(M)s agent="%(a)s"'
)
proc_name = "pacsweb-web"
# gunicorn's control socket sits at one fixed path per user, which several servers on one
# machine (tests, benchmarks) would fight over; pacsweb does not use it.
control_socket_disable = True


def _exit_now(signum: int, frame: object) -> None:
    os._exit(0)


def worker_int(worker) -> None:
    """Quick shutdown (SIGINT, SIGQUIT) ends a worker at once, even while it starts up.

    gunicorn's own handler first shuts the request thread pool down, which blocks forever when
    the signal lands while the main thread holds the pool's lock (submitting a connection), and
    then exits with ``sys.exit``, which joins request threads still blocked on a client's
    socket: either kept ``run_web`` from stopping until the arbiter killed the worker after
    ``graceful_timeout``. SIGTERM stays the graceful stop that lets requests in flight finish.
    """
    os._exit(0)


def post_worker_init(worker) -> None:
    """Set the quick-shutdown signals, then import every view before the worker takes requests.

    Django imports the URL configuration, and with it every app's views (DICOMweb, pydicom, the
    viewers), on the first request it handles: about 0.3 s that the first page of each worker,
    after every start or restart, would otherwise wait.
    """
    # From now on the signal ends the worker without running gunicorn's handler (see above).
    signal.signal(signal.SIGQUIT, _exit_now)
    signal.signal(signal.SIGINT, _exit_now)
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - reading the property imports the URL configuration.
