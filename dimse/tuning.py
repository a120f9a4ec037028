"""Where pynetdicom spends more than receiving and storing an instance does, and what replaces it.

``dimse.server`` puts these into each association as pynetdicom creates it (``tune``). Each keeps
pynetdicom's behaviour and falls back to pynetdicom's own code outside the common case. They
follow pynetdicom 3.0's internals (the version is pinned); the tests in tests/dimse and
tests/interop run them over real associations with pynetdicom and dcmtk peers.
"""

import copy
import logging
import queue
import select
import socket
import struct
import time

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AssociationSocket

try:
    import ssl

    _HAS_SSL = True
except ImportError:  # Python built without OpenSSL: no TLS sockets to tell apart.
    _HAS_SSL = False

LOGGER = logging.getLogger(__name__)

# PS3.7 E.1: C-STORE-RSP's Command Field, and the Command Data Set Type of "no data set".
C_STORE_RSP = 0x8001
NO_DATA_SET = 0x0101
# PS3.8 9.3.5.1: a P-DATA-TF PDU's variable field holds PDV items of 4 bytes of length, a
# presentation context ID and a message control header, then the fragment.
PDV_OVERHEAD = 6
LAST_COMMAND_FRAGMENT = b"\x03"
# How long an association's thread waits for a request before it looks at its other duties.
REACTOR_WAIT = 0.01
# How long the upper layer's thread waits for data before it looks at its other duties (its
# timers, whether it is asked to stop), and what it sleeps between two looks instead of 1 ms.
DUL_WAIT = 0.02
DUL_LOOP_DELAY = 0.0002
# An A-ASSOCIATE-RQ with 128 presentation contexts of a dozen transfer syntaxes each is well
# under this.
LARGEST_ASSOCIATION_PDU = 1024 * 1024


def tune(assoc: Association) -> Association:
    """Give a new acceptor association (not started yet) the receiver's versions below.

    pynetdicom offers no way to choose these classes, and its objects already hold state (the
    socket has queued the connection's first event), so they keep it and get other methods.
    """
    assoc.dul.socket.__class__ = ReceiverSocket
    assoc.dul.socket.watch()
    assoc.dul.__class__ = ReceiverDul
    assoc.dul._run_loop_delay = DUL_LOOP_DELAY
    assoc.dimse.__class__ = ReceiverDimse
    return assoc


class PresentationContexts(list):
    """The supported presentation contexts, copied cheaply for each new association.

    pynetdicom deep-copies the server's contexts for every association it accepts: with every
    storage SOP class that takes 35 ms, as long as storing a large image. Negotiation only reads
    an acceptor's contexts (pynetdicom.presentation.negotiate_as_acceptor), so a shallow copy of
    each context does.
    """

    def __deepcopy__(self, memo: dict) -> list[PresentationContext]:
        return [copy.copy(context) for context in self]


class ReceiverSocket(AssociationSocket):
    """pynetdicom's socket, reading a PDU in as few calls as it can, and waiting for data.

    The upper layer's thread asks ``ready`` whether data has come and, if not, sleeps a
    millisecond and asks again, which keeps an idle association using 4% of a core. Here
    ``ready`` waits (up to DUL_WAIT) for data from the peer or for a wake-up from this process,
    sent when there is a PDU for the thread to send (``ReceiverDul``).
    """

    def watch(self) -> None:
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)

    def wake(self) -> None:
        try:
            self._wake_out.send(b"\x00")
        except OSError:
            # Woken already (the pair's buffer is full) or closed with the association.
            pass

    def largest_pdu(self) -> int:
        # The negotiated limit is for P-DATA-TF PDUs; association requests, which come before
        # it, are allowed a generous size of their own.
        return max(self.assoc.acceptor.maximum_length or 0, LARGEST_ASSOCIATION_PDU)

    @property
    def ready(self) -> bool:
        sock = self.socket
        if sock is None or self._is_connected is False:
            # Nothing can come any more: idle until the association stops this thread.
            time.sleep(DUL_WAIT)
            return False
        if _HAS_SSL and isinstance(sock, ssl.SSLSocket):
            # TLS may hold data that select() does not see: pynetdicom's own test.
            return super().ready
        try:
            readable, _, _ = select.select([sock, self._wake_in], [], [], DUL_WAIT)
        except (OSError, TimeoutError, ValueError):
            # Evt17: transport connection closed, as pynetdicom's ready reports it.
            self.event_queue.put("Evt17")
            return False
        if self._wake_in in readable:
            try:
                while self._wake_in.recv(256):
                    pass
            except OSError:
                pass
        return sock in readable

    def close(self) -> None:
        super().close()
        self._wake_in.close()
        self._wake_out.close()

    def recv(self, nr_bytes: int) -> bytearray:
        # A PDU announces its own length (PS3.8 9.3.1), and nothing bounds it but the largest
        # PDU this receiver accepts: a longer one is a protocol error, and the connection is
        # dropped (pynetdicom treats the short read as the peer closing it) before anything
        # that size is allocated or buffered.
        if nr_bytes > self.largest_pdu():
            LOGGER.warning(
                "dropping the connection from %s: it announces a PDU of %d bytes",
                self.assoc.requestor.address,
                nr_bytes,
            )
            try:
                self.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return bytearray()
        # pynetdicom reads 4 KiB at a time. Every read releases and takes back the interpreter
        # lock, which other associations' threads hold most of the time, so a 128 KiB PDU read
        # that way waits its turn 32 times; reading into one buffer waits once or twice.
        buffer = bytearray(nr_bytes)
        received = 0
        with memoryview(buffer) as view:
            while received < nr_bytes:
                count = self.socket.recv_into(view[received:], nr_bytes - received)
                if not count:
                    # The peer closed the connection: return what came, as pynetdicom does.
                    break
                received += count
        del buffer[received:]
        return buffer


class ReceiverDul(DULServiceProvider):
    """pynetdicom's upper layer, waking its thread when there is something to send."""

    def send_pdu(self, primitive: object) -> None:
        super().send_pdu(primitive)
        self.socket.wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self.socket.wake()


class ReceiverDimse(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider, waiting for requests and encoding C-STORE responses itself.

    An association's thread polls for the next request every millisecond, which keeps an idle
    association using 4% of a core; here it waits for one (``get_msg``). And pynetdicom builds
    every response's command set as a pydicom dataset and encodes it twice (once to learn its
    group length): for a small instance, that is a third of the receiver's work. A C-STORE
    response is a handful of fixed elements (PS3.7 9.3.1.2), encoded here in implicit VR little
    endian as PS3.7 6.3.1 requires (``send_msg``).
    """

    def get_msg(self, block: bool = False) -> tuple[int | None, object]:
        if block:
            return super().get_msg(block=True)
        # The acceptor's reactor asks without blocking, then sleeps a millisecond. Waiting a
        # little instead takes a request as soon as it comes, and lets the reactor look at its
        # other duties (a release or abort from the peer, the idle timer) a hundred times a
        # second rather than a thousand.
        try:
            return self.msg_queue.get(timeout=REACTOR_WAIT)
        except queue.Empty:
            return None, None

    def send_msg(self, primitive: object, context_id: int) -> None:
        encoded = None
        if (
            isinstance(primitive, C_STORE)
            and primitive.MessageIDBeingRespondedTo is not None
            and not self.assoc.get_handlers(evt.EVT_DIMSE_SENT)
        ):
            encoded = c_store_response(primitive)
        limit = self.maximum_pdu_size
        if encoded is None or (limit and len(encoded) + PDV_OVERHEAD > limit):
            super().send_msg(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, LAST_COMMAND_FRAGMENT + encoded))
        self.dul.send_pdu(pdata)


def c_store_response(rsp: C_STORE) -> bytes | None:
    """The command set of a C-STORE response, or None if it is not the usual kind."""
    if rsp.OffendingElement or rsp.Status is None:
        return None
    try:
        elements = [
            _element(0x0002, _padded(rsp.AffectedSOPClassUID, b"\x00")),
            _element(0x0100, struct.pack("<H", C_STORE_RSP)),
            _element(0x0120, struct.pack("<H", rsp.MessageIDBeingRespondedTo)),
            _element(0x0800, struct.pack("<H", NO_DATA_SET)),
            _element(0x0900, struct.pack("<H", rsp.Status)),
        ]
        if rsp.ErrorComment:
            elements.append(_element(0x0902, _padded(rsp.ErrorComment, b" ")))
        elements.append(_element(0x1000, _padded(rsp.AffectedSOPInstanceUID, b"\x00")))
    except (AttributeError, UnicodeEncodeError, struct.error):
        return None
    body = b"".join(elements)
    return _element(0x0000, struct.pack("<I", len(body))) + body


def _element(element: int, value: bytes) -> bytes:
    # Implicit VR little endian: group 0000, element, 4-byte length, value (PS3.5 7.1.3).
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _padded(value: str, pad: bytes) -> bytes:
    # PS3.5 6.2: values have an even length, UIDs padded with NULL, text with a space.
    data = value.encode("ascii")
    return data + pad if len(data) % 2 else data
