"""The MLLP listener: how a RIS sends orders, one framed message at a time, each acknowledged.

MLLP (HL7 v2 Minimal Lower Layer Protocol, release 1) frames every message as
``<VT> message <FS><CR>`` (0x0B ... 0x1C 0x0D) on a TCP connection that the sender usually keeps
open. Each frame goes through ``worklist.services.hl7_file_intake`` and is answered, in original
acknowledgement mode (HL7 2.9.2), with an ACK: MSA-1 ``AA`` when the message is in the worklist
(stored now or before), ``AE`` for an error in its data, ``AR`` when it is refused as a whole
(type, version, size), with an ERR segment naming the field and the reason.
"""

import datetime
import logging
import re
import socket
import socketserver
import threading
import time
import uuid

from django.conf import settings
from django.db import close_old_connections, connections

from worklist.hl7_reader import ERR_SEGMENT_SEQUENCE, ERROR_NAMES, HL7Error
from worklist.models import HL7Message
from worklist.services import MessageOutcome, Status, hl7_file_intake

log = logging.getLogger(__name__)

START = b"\x0b"
END = b"\x1c\x0d"
RECEIVE_CHUNK = 64 * 1024
# How often a connection's thread looks up from its socket to see whether the server stops.
POLL_SECONDS = 0.5
LOCATION = re.compile(r"^([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+))?")
# Characters our ACK text must escape (HL7 2.7.1), with the standard delimiters it uses.
ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}


def escape(text: str) -> str:
    """Text made safe for an HL7 field with the standard delimiters, on one line."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return "".join(ESCAPES.get(c, c) for c in text)


def ack(outcome: MessageOutcome, *, now: datetime.datetime | None = None) -> bytes:
    """The acknowledgement of one message, as bytes ready to frame (UTF-8)."""
    header = outcome.header
    now = now or datetime.datetime.now().astimezone()
    event = header.message_type.partition("^")[2]
    version = header.version or "2.5.1"
    message_type = f"ACK^{event}" if version == "2.3" else f"ACK^{event}^ACK"
    if not event:
        message_type = "ACK"
    msh = "|".join(
        [
            "MSH",
            "^~\\&",
            header.receiving_application or "PACSWEB",
            header.receiving_facility,
            header.sending_application,
            header.sending_facility,
            now.strftime("%Y%m%d%H%M%S%z"),
            "",
            message_type,
            uuid.uuid4().hex[:20].upper(),
            "P",
            version,
        ]
    )
    if outcome.ok:
        text = "duplicate: already received" if outcome.status == Status.DUPLICATE else ""
        segments = [msh, "|".join(["MSA", "AA", escape(header.control_id), text]).rstrip("|")]
    else:
        error = outcome.error or HL7Error("", outcome.reason, ERR_SEGMENT_SEQUENCE, reject=True)
        code = "AR" if error.reject else "AE"
        segments = [
            msh,
            "|".join(["MSA", code, escape(header.control_id), escape(outcome.reason)[:500]]),
            _err(error, outcome.reason),
        ]
    return ("\r".join(segments) + "\r").encode("utf-8")


def _err(error: HL7Error, reason: str) -> str:
    """ERR with ERR-1 (v2.3/2.4 ELD) and ERR-2, 3, 4, 8 (v2.5), so every version can read it."""
    match = LOCATION.match(error.location)
    location = ""
    if match:
        segment, sequence, field = match.groups()
        location = f"{segment}^{sequence or 1}^{field or ''}".rstrip("^")
    name = ERROR_NAMES.get(error.code, "")
    eld = (
        f"{location}^{error.code}&{name}&HL70357" if location else f"^^^{error.code}&{name}&HL70357"
    )
    return "|".join(
        [
            "ERR",
            eld,
            location,
            f"{error.code}^{name}^HL70357",
            "E",
            "",
            "",
            "",
            escape(reason)[:500],
        ]
    )


def frame(payload: bytes) -> bytes:
    return START + payload + END


class MLLPHandler(socketserver.BaseRequestHandler):
    """One sender's connection: read frames, answer each, until it closes or the server stops."""

    server: "MLLPServer"

    def handle(self) -> None:
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        sock: socket.socket = self.request
        sock.settimeout(POLL_SECONDS)
        buffer = b""
        last_data = time.monotonic()
        limit = settings.HL7_MAX_MESSAGE_BYTES
        while not self.server.stopping.is_set():
            start = buffer.find(START)
            end = buffer.find(END, start + 1) if start >= 0 else -1
            if end >= 0:
                self._answer(buffer[start + 1 : end], peer)
                buffer = buffer[end + len(END) :]
                continue
            if start < 0:
                # Bytes outside a frame (keep-alive newlines, noise) are not a message.
                buffer = b""
            elif len(buffer) - start > limit + len(END):
                self._refuse(peer, f"the message is larger than the limit of {limit:,} bytes")
                return
            if time.monotonic() - last_data > self.server.idle_timeout:
                log.info("HL7 connection from %s idle, closed", peer)
                return
            try:
                data = sock.recv(RECEIVE_CHUNK)
            except TimeoutError:
                continue
            except OSError as exc:
                log.info("HL7 connection from %s lost (%s)", peer, exc)
                return
            if not data:
                return
            last_data = time.monotonic()
            buffer += data

    def finish(self) -> None:
        # This thread ends with the connection; so does its database connection.
        connections.close_all()

    def _answer(self, payload: bytes, peer: str) -> None:
        close_old_connections()
        outcomes = hl7_file_intake(
            data=payload, source=HL7Message.Source.MLLP, source_detail=f"MLLP from {peer}"
        )
        for outcome in outcomes:
            log.info("HL7 from %s: %s: %s", peer, outcome.status, outcome.reason)
            self.request.sendall(frame(ack(outcome)))

    def _refuse(self, peer: str, reason: str) -> None:
        log.warning("HL7 connection from %s: %s; closing it", peer, reason)
        error = HL7Error("", reason, ERR_SEGMENT_SEQUENCE, reject=True)
        outcome = MessageOutcome(0, "", Status.REJECTED, reason, error=error)
        self.request.sendall(frame(ack(outcome)))


class MLLPServer(socketserver.ThreadingTCPServer):
    """A thread per connection, at most ``max_connections`` at once; ``stop()`` ends them all
    after the message each is on."""

    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        idle_timeout: float = 600.0,
        max_connections: int = 32,
    ) -> None:
        self.stopping = threading.Event()
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, MLLPHandler)

    def process_request(self, request: socket.socket, client_address: tuple) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning(
                "HL7 connection from %s refused: %d connections are open already",
                client_address[0],
                self.max_connections,
            )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address: tuple) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def stop(self) -> None:
        """Stop accepting, let each connection finish its current message, and wait for them."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
