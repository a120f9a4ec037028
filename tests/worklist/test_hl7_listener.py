"""The MLLP listener over real sockets: ACK and NAK per message, framing, bounds, clean stop."""

import os
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.subprocesses import database_url
from tests.worklist import hl7_samples as s
from worklist.hl7_reader import Message
from worklist.mllp import END, START, MLLPServer
from worklist.models import HL7Message, Order

pytestmark = pytest.mark.django_db(transaction=True)

BASE_DIR = Path(__file__).resolve().parents[2]


@contextmanager
def running(**options):
    server = MLLPServer(("127.0.0.1", 0), **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.stop()
        thread.join()


@pytest.fixture
def listener():
    with running() as port:
        yield port


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def receive_ack(sock: socket.socket) -> Message:
    data = b""
    while END not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    assert data.startswith(START) and data.endswith(END), data
    return Message(data[1 : -len(END)].decode("utf-8"), "utf-8")


def send(sock: socket.socket, message: list, encoding: str = "latin-1") -> Message:
    sock.sendall(START + s.text(message).encode(encoding) + END)
    return receive_ack(sock)


def test_good_message_is_stored_and_acknowledged_aa(listener):
    with connect(listener) as sock:
        ack = send(sock, s.radis_orm())
    msh, msa = ack.segments[0], ack.first("MSA")
    assert msh.get(9) == "ACK" and msh.get(9, 2) == "O01" and msh.get(9, 3) == "ACK"
    # The ACK goes back to the sender: our side is the message's receiver.
    assert (msh.get(3), msh.get(4), msh.get(5), msh.get(6)) == (
        "PACSWEB",
        "CLINIC",
        "RADIS",
        "RADIOLOGY",
    )
    assert msh.get(12) == "2.3.1"
    assert (msa.get(1), msa.get(2)) == ("AA", "RADIS000101")
    assert ack.first("ERR") is None
    order = Order.objects.get()
    assert order.accession_number == "ACC1001"
    assert order.message.source == "mllp"
    assert order.message.source_detail.startswith("MLLP from 127.0.0.1:")


def test_bad_message_is_answered_ae_with_err_naming_the_field(listener):
    with connect(listener) as sock:
        ack = send(sock, s.changed(s.radis_orm(), "PID", 3, ""))
    msa, err = ack.first("MSA"), ack.first("ERR")
    assert (msa.get(1), msa.get(2)) == ("AE", "RADIS000101")
    assert msa.get(3) == "message 1 (MSH-10 'RADIS000101'): PID-3 patient ID is missing"
    assert (err.get(2, 1), err.get(2, 2), err.get(2, 3)) == ("PID", "1", "3")
    assert (err.get(3, 1), err.get(3, 2), err.get(3, 3)) == (
        "101",
        "Required field missing",
        "HL70357",
    )
    assert err.get(4) == "E"
    # ERR-1 in the v2.3 form: segment, sequence, field, and the code in subcomponents.
    assert (err.get(1, 1), err.get(1, 3), err.get(1, 4, 1)) == ("PID", "3", "101")
    assert not Order.objects.exists()


def test_unsupported_message_is_answered_ar(listener):
    with connect(listener) as sock:
        ack = send(sock, s.changed(s.radis_orm(), "MSH", 9, "ORU^R01"))
    assert ack.first("MSA").get(1) == "AR"
    assert ack.first("ERR").get(3, 2) == "Unsupported message type"
    assert ack.first("ERR").get(3) == "200"


def test_reason_text_is_escaped_in_the_ack(listener):
    with connect(listener) as sock:
        sock.sendall(START + s.text(s.changed(s.radis_orm(), "OBR", 24, "C\\F\\T")).encode() + END)
        data = b""
        while END not in data:
            data += sock.recv(4096)
    # The reason quotes the field separator: it travels as \F\ and reads back whole.
    assert b"modality 'C\\F\\T'" in data
    ack = Message(data[1 : -len(END)].decode("utf-8"), "utf-8")
    assert ack.first("MSA").get(3) == (
        "message 1 (MSH-10 'RADIS000101'): OBR-24 modality 'C|T' is not a DICOM code string"
    )


def test_persistent_connection_split_frames_and_duplicates(listener):
    first = s.text(s.radis_orm()).encode("latin-1")
    second = s.text(
        s.radis_orm("RADIS000102", placer="PLC1002", filler="FIL1002", accession="ACC1002")
    ).encode("latin-1")
    with connect(listener) as sock:
        # Noise between frames, and a frame that arrives in three pieces.
        sock.sendall(b"\r\n" + START + first[:40])
        sock.sendall(first[40:])
        sock.sendall(END)
        assert receive_ack(sock).first("MSA").get(1) == "AA"
        sock.sendall(START + second + END + START + first + END)
        acks = [receive_ack(sock), receive_ack(sock)]
    assert [(a.first("MSA").get(1), a.first("MSA").get(2)) for a in acks] == [
        ("AA", "RADIS000102"),
        ("AA", "RADIS000101"),
    ]
    assert acks[1].first("MSA").get(3) == "duplicate: already received"
    assert Order.objects.count() == 2
    assert HL7Message.objects.count() == 2


def test_oversized_frame_is_refused_and_the_connection_closed(listener, settings):
    settings.HL7_MAX_MESSAGE_BYTES = 2000
    with connect(listener) as sock:
        sock.sendall(START + b"MSH|^~\\&|X" + b"x" * 5000)
        ack = receive_ack(sock)
        assert sock.recv(10) == b""
    assert ack.first("MSA").get(1) == "AR"
    assert ack.first("MSA").get(3) == "the message is larger than the limit of 2,000 bytes"
    assert not HL7Message.objects.exists()


def test_connections_beyond_the_limit_are_closed_at_once():
    with running(max_connections=1) as port, connect(port) as first:
        assert send(first, s.radis_orm()).first("MSA").get(1) == "AA"
        with connect(port) as second:
            assert second.recv(10) == b""
        # The first connection is still served.
        duplicate = send(first, s.radis_orm())
        assert duplicate.first("MSA").get(3) == "duplicate: already received"


def test_idle_connection_is_closed():
    with running(idle_timeout=0.2) as port, connect(port) as sock:
        assert sock.recv(10) == b""


def test_command_acknowledges_and_stops_cleanly_on_sigterm():
    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "hl7_listener", "--port", "0", "--bind", "127.0.0.1"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("HL7 MLLP listener on 127.0.0.1:"), process.stderr.read()
        port = int(line.rsplit(":", 1)[1])
        # The second connection stays open and idle, as senders keep theirs: it must not hold
        # up the stop.
        with connect(port) as sock, connect(port):
            assert send(sock, s.ofill_omi(), "utf-8").first("MSA").get(1) == "AA"
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out.splitlines()[-2:] == ["stopping: finishing the messages in progress", "stopped"]
    assert Order.objects.get().accession_number == "ACC7001"
