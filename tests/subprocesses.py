"""Helpers for tests that start pacsweb's servers as subprocesses on the test database."""

import socket
import subprocess
import time

from django.db import connection


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The test database, for a subprocess (the SQLite test database is a file)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    """Return once ``process`` listens on ``port``; fail with its output if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {process.stdout.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            # Polling the port (not waiting a fixed time): it opens as soon as the process binds.
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on port {port}")
