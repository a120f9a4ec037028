"""Where pynetdicom spends more than receiving and storing an instance does, and what replaces it.

``dimse.server`` puts these into each association as pynetdicom creates it (``tune``). Each keeps
pynetdicom's behaviour and falls back to pynetdicom's own code outside the common case. They
follow pynetdicom 3.0's internals (the version is pinned); the tests in tests/dimse and
tests/interop run them over real associations with pynetdicom and dcmtk peers.
"""

import copy
import io
import logging
import queue
import select
import socket
import struct
import time

from pydicom.uid import RE_VALID_UID
from pynetdicom import _config, _validators, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_items import PresentationDataValueItem
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AssociationSocket

try:
    import ssl

    _HAS_SSL = True
except ImportError:  # Python built without OpenSSL: no TLS sockets to tell apart.
    _HAS_SSL = False

LOGGER = logging.getLogger(__name__)
# What pynetdicom's upper layer logs, where it logs it, for the errors that ReceiverDul reports.
DUL_LOGGER = logging.getLogger("pynetdicom.dul")

# PS3.7 E.1: C-STORE-RQ's and C-STORE-RSP's Command Field, and the Command Data Set Type of
# "no data set".
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
NO_DATA_SET = 0x0101
# PS3.8 9.3.1: a PDU starts with its type, a reserved byte and 4 bytes of length; 0x04 is P-DATA-TF.
PDU_HEADER = struct.Struct(">BxI")
P_DATA_TF_TYPE = 0x04
# PS3.8 9.3.5.1: a P-DATA-TF PDU's variable field holds PDV items of 4 bytes of length, a
# presentation context ID and a message control header, then the fragment.
PDV_OVERHEAD = 6
PDV_LENGTH = struct.Struct(">I")
LAST_COMMAND_FRAGMENT = b"\x03"
# PS3.8 E.2: the message control header's bits say "command" (else data set) and "last fragment".
COMMAND_FRAGMENT = 0x01
LAST_FRAGMENT = 0x02
FRAGMENT_KIND = COMMAND_FRAGMENT | LAST_FRAGMENT
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

    def pdu_header(self) -> tuple[int, int] | None:
        """The type and length of the PDU that comes next, if its header has come whole.

        Only looks (MSG_PEEK): what is read is still there for whoever reads the PDU.
        """
        sock = self.socket
        if sock is None or (_HAS_SSL and isinstance(sock, ssl.SSLSocket)):
            # A TLS socket cannot peek.
            return None
        try:
            header = sock.recv(PDU_HEADER.size, socket.MSG_PEEK)
        except OSError:
            return None
        if len(header) < PDU_HEADER.size:
            return None
        return PDU_HEADER.unpack(header)

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
        return self.recv_whole(nr_bytes)

    def recv_whole(self, nr_bytes: int) -> bytearray:
        """``nr_bytes`` from the peer, or what came before it closed the connection."""
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
    """pynetdicom's upper layer, waking its thread when there is something to send, and reading
    P-DATA-TF PDUs without copying them.

    pynetdicom copies every P-DATA-TF PDU four times before the DIMSE provider has its fragments
    (the header and body joined, made bytes, each PDV item sliced out, then its message control
    header sliced off): for a large instance, that is most of what reading it costs. Here a
    P-DATA-TF PDU is read into one buffer, and its PDV items are views of it
    (``_read_pdu_data``, ``_decode_pdu``). Other PDUs, and the same PDUs when something watches
    received data or PDUs (EVT_DATA_RECV, EVT_PDU_RECV), go pynetdicom's way.
    """

    def send_pdu(self, primitive: object) -> None:
        super().send_pdu(primitive)
        self.socket.wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self.socket.wake()

    def _watched(self) -> bool:
        assoc = self.assoc
        return bool(assoc.get_handlers(evt.EVT_DATA_RECV) or assoc.get_handlers(evt.EVT_PDU_RECV))

    def _read_pdu_data(self) -> None:
        header = None if self._watched() else self.socket.pdu_header()
        if header is None or header[0] != P_DATA_TF_TYPE or header[1] > self.socket.largest_pdu():
            super()._read_pdu_data()
            return
        # From here on, what pynetdicom's _read_pdu_data does for a PDU whose header has come.
        length = PDU_HEADER.size + header[1]
        try:
            bytestream = self.socket.recv_whole(length)
        except (OSError, TimeoutError) as exc:
            DUL_LOGGER.error("Connection closed before the entire PDU was received")
            DUL_LOGGER.exception(exc)
            self.event_queue.put("Evt17")
            return
        if len(bytestream) != length:
            DUL_LOGGER.error(
                f"The received PDU is shorter than expected ({len(bytestream)} of "
                f"{length} bytes received)"
            )
            self.event_queue.put("Evt17")
            return
        try:
            pdu, event = self._decode_pdu(bytestream)
            self.event_queue.put(event)
        except Exception as exc:
            DUL_LOGGER.error("Unable to decode the received PDU data")
            DUL_LOGGER.exception(exc)
            self.event_queue.put("Evt19")
            return
        self._recv_pdu.put(pdu)

    def _decode_pdu(self, bytestream: bytearray) -> tuple[object, str]:
        if bytestream[:1] == bytes([P_DATA_TF_TYPE]) and not self._watched():
            pdu = p_data_tf(bytestream)
            if pdu is not None:
                # pynetdicom's event for a received P-DATA-TF PDU.
                return pdu, "Evt10"
        return super()._decode_pdu(bytestream)


def p_data_tf(bytestream: bytearray) -> P_DATA_TF | None:
    """The P-DATA-TF PDU pynetdicom decodes, with views of ``bytestream`` as its fragments.

    None if its PDV items are not all well formed (pynetdicom then decodes it, or reports why it
    cannot).
    """
    view = memoryview(bytestream)
    end = len(bytestream)
    offset = PDU_HEADER.size
    items = []
    while offset < end:
        if offset + PDV_LENGTH.size >= end:
            return None
        (item_length,) = PDV_LENGTH.unpack_from(bytestream, offset)
        following = offset + PDV_LENGTH.size + item_length
        # A context ID and a message control header at least, and nothing past the PDU's end.
        if item_length < 2 or following > end:
            return None
        item = PresentationDataValueItem()
        item.presentation_context_id = bytestream[offset + PDV_LENGTH.size]
        item.presentation_data_value = view[offset + PDV_LENGTH.size + 1 : following]
        items.append(item)
        offset = following
    if not items:
        return None
    pdu = P_DATA_TF()
    pdu.presentation_data_value_items = items
    return pdu


class ReceiverDimse(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider, waiting for requests, and decoding C-STORE requests and
    encoding C-STORE responses itself.

    An association's thread polls for the next request every millisecond, which keeps an idle
    association using 4% of a core; here it waits for one (``get_msg``). And pynetdicom builds
    every response's command set as a pydicom dataset and encodes it twice (once to learn its
    group length): for a small instance, that is a third of the receiver's work. A C-STORE
    response is a handful of fixed elements (PS3.7 9.3.1.2), encoded here in implicit VR little
    endian as PS3.7 6.3.1 requires (``send_msg``).

    Each request's command set, likewise, is decoded with pydicom, then read element by element
    into the request primitive, and each fragment of its data set copied twice more: 0.2 ms for
    a C-STORE request. Its few elements (PS3.7 9.3.1.1) are decoded here, the primitive gets
    the values pynetdicom would give it through its own setters, and the data set's fragments
    are joined once (``receive_primitive``). Anything else is handed to pynetdicom as it came,
    with what had come of the message before.
    """

    # The PDVs of the C-STORE request being received here, its command first; its primitive.
    _store_pdvs: list[tuple[int, memoryview]] | None = None
    _store_request: C_STORE | None = None

    def receive_primitive(self, primitive: P_DATA) -> None:
        items = primitive.presentation_data_value_list
        if self.message is not None or not items or not _usual_config():
            # pynetdicom is putting a message together, or may be asked to.
            self._hand_over(items)
            return
        for index, (context_id, data) in enumerate(items):
            fragment = memoryview(data)
            if self._store_pdvs is None:
                request = None
                if len(fragment) > 1 and fragment[0] & FRAGMENT_KIND == FRAGMENT_KIND:
                    request = c_store_request(fragment[1:])
                if request is None:
                    self._hand_over(items[index:])
                    return
                self._store_pdvs, self._store_request = [(context_id, fragment)], request
            elif len(fragment) and not fragment[0] & COMMAND_FRAGMENT:
                self._store_pdvs.append((context_id, fragment))
                if fragment[0] & LAST_FRAGMENT:
                    # pynetdicom ignores what follows the end of a message in a P-DATA.
                    self._store_received()
                    return
            else:
                self._hand_over(items[index:])
                return

    def _store_received(self) -> None:
        if self.assoc.get_handlers(evt.EVT_DIMSE_RECV):
            # Someone came to watch messages: pynetdicom shows them this one.
            self._hand_over([self._store_pdvs.pop()])
            return
        (context_id, _), *data = self._store_pdvs
        request = self._store_request
        self._store_pdvs = self._store_request = None
        # One copy of the data set; the BytesIO keeps it (being its only holder) rather than
        # copying it again, and stands at its end, as the one pynetdicom writes it to does.
        data_set = io.BytesIO(b"".join([fragment[1:] for _, fragment in data]))
        data_set.seek(0, io.SEEK_END)
        request.DataSet = data_set
        request._context_id = context_id
        request._dataset_path = None
        request._dataset_file = None
        self.msg_queue.put((context_id, request))

    def _hand_over(self, items: list[tuple[int, bytes]]) -> None:
        """Leave the rest of the message to pynetdicom, with what came of it before ``items``."""
        if self._store_pdvs is not None:
            self.message = DIMSEMessage()
            self.message.decode_msg(_p_data(self._store_pdvs), self.assoc)
            self._store_pdvs = self._store_request = None
        super().receive_primitive(_p_data(items))

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


def _p_data(items: list[tuple[int, bytes]]) -> P_DATA:
    primitive = P_DATA()
    primitive.presentation_data_value_list.extend(items)
    return primitive


def _usual_config() -> bool:
    # The configuration c_store_request's checks assume, where pynetdicom receives a data set
    # in memory.
    validators = _config.VALIDATORS
    return (
        not _config.STORE_RECV_CHUNKED_DATASET
        and validators["UI"] is _validators.validate_ui
        and validators["AE"] is _validators.validate_ae
    )


# The elements of a C-STORE request's command set (PS3.7 9.3.1.1, E.1) by element number (group
# 0000): the keyword of the C_STORE primitive's parameter that pynetdicom sets from it (None
# for those it does not keep), and its VR.
C_STORE_RQ_ELEMENTS = {
    0x0000: (None, "UL"),  # Command Group Length
    0x0002: ("AffectedSOPClassUID", "UI"),
    0x0100: (None, "US"),  # Command Field
    0x0110: ("MessageID", "US"),
    0x0700: ("Priority", "US"),
    0x0800: (None, "US"),  # Command Data Set Type
    0x1000: ("AffectedSOPInstanceUID", "UI"),
    0x1030: ("MoveOriginatorApplicationEntityTitle", "AE"),
    0x1031: ("MoveOriginatorMessageID", "US"),
}
COMMAND_FIELD = 0x0100
COMMAND_DATA_SET_TYPE = 0x0800
PRIORITY = 0x0700
PRIORITIES = (0, 1, 2)
# Implicit VR little endian: group, element, 4-byte length (PS3.5 7.1.3).
ELEMENT_HEADER = struct.Struct("<HHI")
AE_MAX = 16


def c_store_request(command: memoryview) -> C_STORE | None:
    """The C_STORE primitive pynetdicom makes of this command set, without its data set.

    None unless the command set is a C-STORE request with a data set whose values pynetdicom
    would take as they are, without a warning: pynetdicom decodes anything else itself.
    """
    values = {}
    offset, end, previous = 0, len(command), -1
    while offset < end:
        if offset + ELEMENT_HEADER.size > end:
            return None
        group, element, length = ELEMENT_HEADER.unpack_from(command, offset)
        offset += ELEMENT_HEADER.size
        if (
            group != 0x0000
            or element not in C_STORE_RQ_ELEMENTS
            or element <= previous
            or offset + length > end
        ):
            return None
        value = _command_value(C_STORE_RQ_ELEMENTS[element][1], command[offset : offset + length])
        if value is None:
            return None
        values[element] = value
        previous = element
        offset += length
    if (
        values.get(COMMAND_FIELD) != C_STORE_RQ
        or values.get(COMMAND_DATA_SET_TYPE, NO_DATA_SET) == NO_DATA_SET
        or values.get(PRIORITY, PRIORITIES[0]) not in PRIORITIES
    ):
        return None
    # pynetdicom sets the parameters in the command set's order, through the same setters.
    request = C_STORE()
    for element, value in values.items():
        keyword = C_STORE_RQ_ELEMENTS[element][0]
        if keyword:
            setattr(request, keyword, value)
    return request


def _command_value(vr: str, raw: memoryview) -> int | str | None:
    """The value pydicom decodes, if it is one value that pynetdicom takes without a word."""
    if vr == "US":
        return struct.unpack("<H", raw)[0] if len(raw) == 2 else None
    if vr == "UL":
        return struct.unpack("<I", raw)[0] if len(raw) == 4 else None
    data = bytes(raw)
    if vr == "UI":
        # A trailing NULL or space is padding (PS3.5 6.2, 9.1); a conformant UID then passes
        # pynetdicom's checks (utils.set_uid) without a warning.
        uid = data.rstrip(b"\x00 ").decode("latin-1")
        if len(uid) > 64 or not RE_VALID_UID.fullmatch(uid):
            return None
        return uid
    # AE: leading and trailing spaces are padding; ASCII without control characters or a
    # backslash, at most 16 characters, passes pynetdicom's checks (utils.set_ae).
    if not data or any(byte < 0x20 or byte > 0x7E or byte == 0x5C for byte in data):
        return None
    title = data.decode("ascii").strip(" ")
    return title if len(title) <= AE_MAX else None
