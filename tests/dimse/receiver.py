"""The DICOM receiver under test: in this process on a thread, or ``dicom_receiver`` as a subprocess."""

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from pynetdicom import AE, _config
from pynetdicom.association import Association

from dimse import server
from tests.subprocesses import database_url, free_port, wait_for_port

BASE_DIR = Path(__file__).resolve().parent.parent.parent
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@contextmanager
def in_process_scp(**option_overrides: int | str) -> Iterator[int]:
    """pacsweb's receiver serving on a thread of this process; yields its port.

    Its handlers run here, so a test can change what they call (a disk that fills up).
    """
    options = server.ReceiverOptions(
        **{
            "ae_title": "PACSWEB",
            "max_pdu": 1024 * 1024,
            "max_associations": 32,
            "processes": 1,
            **option_overrides,
        }
    )
    sock = server.listen("127.0.0.1", 0)
    scp = server.make_server(sock=sock, options=options)
    thread = threading.Thread(target=scp.serve_forever, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        server.stop(scp)
        thread.join()


@dataclass
class Receiver:
    port: int
    storage: Path
    process: subprocess.Popen

    def stop(self) -> str:
        """Stop it with SIGTERM as an operator would; return everything it printed."""
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=60)
        return out


@contextmanager
def receiver_process(data_dir: Path, *args: str) -> Iterator[Receiver]:
    """``manage.py dicom_receiver`` on a free port, on the test database and its own data folder."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        # The test settings take the data folder from here.
        "PACSWEB_TEST_DATA_DIR": str(data_dir),
        "PACSWEB_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "dicom_receiver",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            *args,
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, process)
        yield Receiver(port, data_dir / "storage", process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def use_storage_of(receiver: Receiver) -> None:
    """Make ``studies.storage`` in this process look at the receiver's files."""
    settings.STORAGE_DIR = receiver.storage


def associate(
    port: int, *contexts: tuple[str, list[str]], ae_title: str = "TESTSCU"
) -> Association:
    """An association from pynetdicom as the SCU, with Nagle's algorithm off as dcmtk's TCP_NODELAY=1."""
    ae = AE(ae_title=ae_title)
    for abstract_syntax, transfer_syntaxes in contexts:
        ae.add_requested_context(abstract_syntax, transfer_syntaxes)
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSWEB")
    assert assoc.is_established, "the receiver refused the association"
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return assoc


@contextmanager
def sending_files_as_they_are() -> Iterator[None]:
    """pynetdicom sends a file's dataset bytes as they are, rather than encoding it again."""
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        yield
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
