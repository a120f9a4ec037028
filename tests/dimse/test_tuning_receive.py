"""The receiver's reading of P-DATA-TF PDUs and C-STORE requests gives what pynetdicom's does.

Each test gives the same input to pynetdicom's own classes and to dimse.tuning's, and compares
everything that comes out: the C_STORE primitive (every attribute, its data set and where that
stands), the upper layer's events and PDUs, what is logged, the exception raised.
"""

import io
import logging
import os
import socket
import socketserver
import struct
import subprocess
import threading
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.sop_class import CTImageStorage
from pynetdicom.transport import AddressInformation, AssociationSocket, RequestHandler

from dimse import tuning
from tests.conftest import make_dataset
from tests.tools import require_tool

CT = b"1.2.840.10008.5.1.4.1.1.2\x00"
INSTANCE = b"1.2.826.0.1.3680043.8.498.1\x00"


@pytest.fixture(autouse=True)
def quiet_pynetdicom(monkeypatch):
    # As the receiver runs it (dimse.server): pynetdicom's standard handlers, which log every
    # PDU and message, watch them as a bound handler would, and take them pynetdicom's way.
    monkeypatch.setattr(_config, "LOG_HANDLER_LEVEL", "none")


@pytest.fixture
def decoded_here(monkeypatch) -> dict[str, int]:
    """How many C-STORE requests and P-DATA-TF PDUs dimse.tuning decoded itself."""
    counts = {"requests": 0, "pdus": 0}

    def counting(name: str, key: str) -> None:
        decode = getattr(tuning, name)

        def counted(*args):
            result = decode(*args)
            counts[key] += result is not None
            return result

        monkeypatch.setattr(tuning, name, counted)

    counting("c_store_request", "requests")
    counting("p_data_tf", "pdus")
    return counts


def element(number: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0x0000, number, len(value)) + value


def us(value: int) -> bytes:
    return struct.pack("<H", value)


def command(*elements: bytes, group_length: bool = True) -> bytes:
    body = b"".join(elements)
    return (element(0x0000, struct.pack("<I", len(body))) if group_length else b"") + body


def store_rq(
    *,
    sop_class: bytes = CT,
    instance: bytes = INSTANCE,
    message_id: bytes = us(7),
    priority: bytes | None = us(0),
    data_set_type: int = 0x0001,
    originator: bytes | None = None,
    originator_id: bytes | None = None,
    command_field: int = 0x0001,
) -> bytes:
    elements = [
        element(0x0002, sop_class),
        element(0x0100, us(command_field)),
        element(0x0110, message_id),
    ]
    if priority is not None:
        elements.append(element(0x0700, priority))
    elements += [element(0x0800, us(data_set_type)), element(0x1000, instance)]
    if originator is not None:
        elements.append(element(0x1030, originator))
    if originator_id is not None:
        elements.append(element(0x1031, originator_id))
    return command(*elements)


def p_data(*pdvs: tuple[int, bytes]) -> P_DATA:
    primitive = P_DATA()
    primitive.presentation_data_value_list.extend(pdvs)
    return primitive


def summary(primitive: object) -> dict:
    """Everything a primitive holds, its data set as bytes and the position it stands at."""
    attributes = dict(vars(primitive))
    data_set = attributes.get("_dataset")
    if isinstance(data_set, io.BytesIO):
        attributes["_dataset"] = (data_set.getvalue(), data_set.tell())
    return {"class": type(primitive).__name__, **attributes}


def new_association() -> Association:
    return Association(AE(), "acceptor")


def receive(dimse_class: type, primitives: list[P_DATA], caplog, watch: bool = False) -> dict:
    """What a DIMSE provider of ``dimse_class`` makes of ``primitives``."""
    assoc = new_association()
    assoc.dimse.__class__ = dimse_class
    watched = []
    if watch:
        assoc.bind(evt.EVT_DIMSE_RECV, lambda event: watched.append(type(event.message).__name__))
    caplog.clear()
    error = None
    try:
        for primitive in primitives:
            assoc.dimse.receive_primitive(primitive)
    except Exception as exc:  # noqa: BLE001 - whatever pynetdicom raises, compared
        error = repr(exc)
    queued = []
    while not assoc.dimse.msg_queue.empty():
        context_id, primitive = assoc.dimse.msg_queue.get()
        queued.append((context_id, summary(primitive)))
    events = []
    while not assoc.dul.event_queue.empty():
        events.append(assoc.dul.event_queue.get())
    return {
        "queued": queued,
        "error": error,
        "events": events,
        "watched": watched,
        "in progress": assoc.dimse.message is not None or assoc.dimse._store_pdvs is not None
        if dimse_class is tuning.ReceiverDimse
        else assoc.dimse.message is not None,
        "log": [(r.levelname, r.getMessage()) for r in caplog.records],
    }


def assert_same(primitives: list[P_DATA], caplog, watch: bool = False) -> dict:
    with caplog.at_level(logging.DEBUG):
        theirs = receive(DIMSEServiceProvider, primitives, caplog, watch)
        ours = receive(tuning.ReceiverDimse, primitives, caplog, watch)
    assert ours == theirs
    return ours


DATA = bytes(range(256)) * 8


@pytest.mark.parametrize(
    "cmd",
    [
        store_rq(),
        store_rq(priority=us(1), message_id=us(65535)),
        store_rq(priority=None),
        # pynetdicom pads UIDs with NULL; others send them odd or pad with a space.
        store_rq(sop_class=CT[:-1], instance=INSTANCE[:-1]),
        store_rq(instance=b"1.2.3 "),
        store_rq(instance=b"1.2.3\x00\x00"),
        # A C-STORE sub-operation of a C-MOVE names the move's originator (PS3.7 9.3.1.1).
        store_rq(originator=b"MOVESCU ", originator_id=us(42)),
        store_rq(originator=b" PADDED_TITLE   ", originator_id=us(0)),
        store_rq(originator=b"  ", originator_id=us(3)),
        store_rq(originator_id=us(3)),
        store_rq(data_set_type=0xFEFE),
        command(
            element(0x0002, CT),
            element(0x0100, us(1)),
            element(0x0110, us(9)),
            element(0x0800, us(0)),
            element(0x1000, INSTANCE),
            group_length=False,
        ),
    ],
)
def test_usual_c_store_request_is_decoded_here_as_pynetdicom_does(cmd, caplog, decoded_here):
    result = assert_same([p_data((3, b"\x03" + cmd)), p_data((3, b"\x02" + DATA))], caplog)
    assert len(result["queued"]) == 1
    assert decoded_here["requests"] == 1


@pytest.mark.parametrize(
    "cmd",
    [
        # Values pynetdicom warns about, rejects or reads differently.
        store_rq(instance=b"1.2.03\x00"),
        store_rq(instance=b"1.2.3\\1.2.4"),
        store_rq(instance=b""),
        store_rq(instance=b"1." + b"2" * 70),
        store_rq(priority=us(3)),
        store_rq(priority=b"\x00\x00\x01\x00"),
        store_rq(message_id=b""),
        store_rq(originator=b"A\\B"),
        store_rq(originator=b"SEVENTEEN_CHARSXX"),
        store_rq(originator=b"TAB\tTITLE"),
        store_rq(originator=b""),
        # Not a C-STORE request with a data set.
        store_rq(data_set_type=0x0101),
        store_rq(command_field=0x0030),
        command(
            element(0x0002, b"1.2.840.10008.1.1\x00"),
            element(0x0100, us(0x0030)),
            element(0x0110, us(1)),
            element(0x0800, us(0x0101)),
        ),
        # Not in order, an element a C-STORE request has not, one cut short.
        command(element(0x0100, us(1)), element(0x0002, CT), element(0x0800, us(0))),
        store_rq() + element(0x0600, b"DEST"),
        command(element(0x0002, CT), element(0x0002, CT), element(0x0100, us(1))),
        store_rq()[:-3],
    ],
)
def test_other_commands_are_left_to_pynetdicom(cmd, caplog, decoded_here):
    assert_same([p_data((3, b"\x03" + cmd)), p_data((3, b"\x02" + DATA))], caplog)
    assert decoded_here["requests"] == 0


CMD = store_rq(originator=b"MOVESCU", originator_id=us(5))


@pytest.mark.parametrize(
    "primitives",
    [
        # Fragments in P-DATAs of their own, or several to a P-DATA.
        [p_data((1, b"\x03" + CMD)), p_data((1, b"\x00" + DATA)), p_data((1, b"\x02" + DATA))],
        [p_data((1, b"\x03" + CMD), (1, b"\x00" + DATA), (1, b"\x00" + DATA), (1, b"\x02"))],
        # Two requests, and what pynetdicom drops after the end of a message in a P-DATA.
        [
            p_data((1, b"\x03" + CMD), (1, b"\x02" + DATA), (1, b"\x00" + DATA)),
            p_data((5, b"\x03" + CMD)),
            p_data((1, b"\x02" + DATA[:5]), (5, b"\x03" + CMD)),
        ],
        # Only the significant bits of the message control header count (PS3.8 E.2).
        [p_data((1, b"\xff" + CMD)), p_data((1, b"\xfe" + DATA))],
        # A command set in two fragments.
        [p_data((1, b"\x01" + CMD[:20])), p_data((1, b"\x03" + CMD[20:])), p_data((1, b"\x02"))],
        # A command fragment where the data set's should be, a data set without a command.
        [p_data((1, b"\x03" + CMD), (1, b"\x00" + DATA)), p_data((1, b"\x03" + CMD))],
        [p_data((1, b"\x03" + CMD)), p_data((1, b"\x00" + DATA), (1, b"\x01" + CMD))],
        [p_data((1, b"\x02" + DATA))],
        # A message in progress goes on after a request pynetdicom handles.
        [p_data((1, b"\x03" + store_rq(instance=b"1.02\x00"))), p_data((1, b"\x02" + DATA))],
        # Empty P-DATAs and fragments.
        [p_data(), p_data((1, b"\x03" + CMD)), p_data(), p_data((1, b"")), p_data((1, b"\x02"))],
        [p_data((1, b"\x03" + CMD)), p_data((1, b"\x00")), p_data((1, b"\x02" + DATA))],
    ],
)
def test_fragments_are_assembled_as_pynetdicom_does(primitives, caplog):
    assert_same(primitives, caplog)


def test_a_watched_request_is_shown_by_pynetdicom(caplog):
    primitives = [p_data((1, b"\x03" + CMD)), p_data((1, b"\x02" + DATA))]
    result = assert_same(primitives, caplog, watch=True)
    assert result["watched"] == ["C_STORE_RQ"]


def pdu(*pdvs: tuple[int, bytes], pdu_type: int = 0x04, length: int | None = None) -> bytes:
    body = b"".join(struct.pack(">IB", len(data) + 1, cid) + data for cid, data in pdvs)
    return struct.pack(">BxI", pdu_type, len(body) if length is None else length) + body


def raw_pdv(length: int, data: bytes) -> bytes:
    """A PDV item whose length field says ``length``, whatever follows."""
    return struct.pack(">I", length) + data


def read_pdus(dul_class: type, stream: bytes, reads: int, caplog, watch: bool = False) -> dict:
    """What an acceptor's upper layer of ``dul_class`` makes of ``stream`` from its peer."""
    ours, peer = socket.socketpair()
    assoc = new_association()
    assoc.requestor.address_info = AddressInformation("127.0.0.1", 11112)
    if watch:
        assoc.bind(evt.EVT_PDU_RECV, lambda event: None)
    assoc.dul.socket = AssociationSocket(assoc, client_socket=ours)
    if dul_class is tuning.ReceiverDul:
        tuning.tune(assoc)
    assoc.dul.event_queue.get()  # Evt5, the connection
    peer.sendall(stream)
    peer.close()
    caplog.clear()
    for _ in range(reads):
        assoc.dul._read_pdu_data()
    events, pdus = [], []
    while not assoc.dul.event_queue.empty():
        events.append(assoc.dul.event_queue.get())
    while not assoc.dul._recv_pdu.empty():
        received = assoc.dul._recv_pdu.get()
        items = getattr(received, "presentation_data_value_items", [])
        pdus.append(
            (
                type(received).__name__,
                [(i.presentation_context_id, bytes(i.presentation_data_value)) for i in items],
            )
        )
    ours.close()
    return {
        "events": events,
        "pdus": pdus,
        "log": [(r.name, r.levelname, r.getMessage()) for r in caplog.records],
    }


@pytest.mark.parametrize(
    ("stream", "reads"),
    [
        (pdu((1, b"\x03" + CMD)) + pdu((1, b"\x00" + DATA), (3, b"\x02" + DATA)), 2),
        (pdu((1, b"\x02")), 1),
        (pdu(pdu_type=0x05, length=4) + b"\x00" * 4 + pdu((1, b"\x02" + DATA)), 2),
        # Malformed PDV items: pynetdicom's decoding reports them.
        (pdu(length=0), 1),
        (pdu(length=4) + raw_pdv(1, b""), 1),
        (pdu(length=5) + raw_pdv(1, b"\x01"), 1),
        (pdu(length=4) + raw_pdv(0, b""), 1),
        (pdu(length=8) + raw_pdv(9, b"\x01\x02\x03\x04"), 1),
        (pdu(length=7) + raw_pdv(2, b"\x01\x02") + b"\x00", 1),
        # The peer stops in the middle of a PDU, or of its header.
        (pdu((1, b"\x02" + DATA))[:-10], 1),
        (pdu((1, b"\x02" + DATA))[:4], 1),
        (b"\x09\x00\x00\x00\x00\x02\x00\x00", 1),
    ],
)
def test_pdus_are_read_as_pynetdicom_reads_them(stream, reads, caplog):
    with caplog.at_level(logging.DEBUG):
        theirs = read_pdus(DULServiceProvider, stream, reads, caplog)
        ours = read_pdus(tuning.ReceiverDul, stream, reads, caplog)
    assert ours == theirs


def test_a_p_data_tf_pdu_longer_than_the_limit_drops_the_connection(caplog):
    # 2 MiB, more than the receiver accepts (ReceiverSocket.largest_pdu), then nothing.
    stream = b"\x04\x00" + (2 * 1024 * 1024).to_bytes(4, "big") + b"\x00" * 100
    with caplog.at_level(logging.DEBUG):
        ours = read_pdus(tuning.ReceiverDul, stream, 1, caplog)
    assert ours["events"] == ["Evt17"]
    assert any("announces a PDU of 2097152 bytes" in log[2] for log in ours["log"])


def test_watched_pdus_are_read_by_pynetdicom(caplog, decoded_here):
    stream = pdu((1, b"\x03" + CMD)) + pdu((1, b"\x02" + DATA))
    with caplog.at_level(logging.DEBUG):
        theirs = read_pdus(DULServiceProvider, stream, 2, caplog, watch=True)
        ours = read_pdus(tuning.ReceiverDul, stream, 2, caplog, watch=True)
    assert ours == theirs
    assert decoded_here["pdus"] == 0


def test_p_data_tf_pdus_are_decoded_in_place():
    stream = bytearray(pdu((1, b"\x03" + CMD), (7, b"\x00" + DATA)))
    theirs = P_DATA_TF()
    theirs.decode(bytes(stream))
    ours = tuning.p_data_tf(stream)
    assert [(i.context_id, i.data) for i in ours.presentation_data_value_items] == [
        (i.context_id, i.data) for i in theirs.presentation_data_value_items
    ]
    assert all(
        isinstance(i.data, memoryview) and i.data.obj is stream
        for i in ours.presentation_data_value_items
    )


# Over real associations: a pynetdicom acceptor as pynetdicom makes it, and one tuned as the
# receiver tunes its own, each recording every C-STORE request as its handler sees it.


class _TunedRequestHandler(RequestHandler):
    def _create_association(self) -> Association:
        return tuning.tune(super()._create_association())


def recording_server(tuned: bool, watch: bool = False):
    ae = AE("PACSWEB")
    ae.maximum_pdu_size = 16384
    ae.add_supported_context(
        CTImageStorage, [pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian]
    )
    requests = []

    def handle_store(event):
        request = event.request
        with request.DataSet.getbuffer() as buffer:
            data = bytes(buffer)
        requests.append((summary(request), data, event.context.transfer_syntax))
        return 0x0000

    handlers = [(evt.EVT_C_STORE, handle_store)]
    if watch:
        handlers.append((evt.EVT_DIMSE_RECV, lambda event: None))
    kwargs = {"request_handler": _TunedRequestHandler} if tuned else {}
    server = ae.make_server(("127.0.0.1", 0), evt_handlers=handlers, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, requests


def served(tuned: bool, send, watch: bool = False) -> list:
    server, requests = recording_server(tuned, watch)
    try:
        send(server.server_address[1])
    finally:
        # The server was made, not started, by its AE, which does not know it to forget it.
        socketserver.BaseServer.shutdown(server)
        server.server_close()
    return [
        (
            {k: v for k, v in attributes.items() if k != "_dataset"},
            attributes["_dataset"][1] == len(attributes["_dataset"][0]) == len(data),
            data,
            syntax,
        )
        for attributes, data, syntax in requests
    ]


def ct_datasets() -> list[pydicom.Dataset]:
    """The same instances for every acceptor, of even- and odd-length SOP Instance UIDs."""
    return [
        make_dataset(
            study_uid="1.2.826.0.1.3680043.8.498.1",
            series_uid="1.2.826.0.1.3680043.8.498.2",
            sop_uid=f"1.2.826.0.1.3680043.8.498.3.{index}" + "1" * index,
            rows=side,
            columns=side,
        )
        for index, side in enumerate((8, 100, 300, 387))
    ]


def send_with_pynetdicom(port: int) -> None:
    ae = AE("SENDER")
    ae.add_requested_context(CTImageStorage, pydicom.uid.ExplicitVRLittleEndian)
    ae.maximum_pdu_size = 0
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSWEB")
    assert assoc.is_established
    for index, ds in enumerate(ct_datasets()):
        if index % 2:
            status = assoc.send_c_store(ds, originator_aet="MOVESCU", originator_id=index)
        else:
            status = assoc.send_c_store(ds, priority=index % 3)
        assert status.Status == 0x0000
    assoc.release()


@pytest.mark.parametrize("watch", [False, True])
def test_pynetdicom_scu_requests_are_received_as_pynetdicom_receives_them(watch, decoded_here):
    theirs = served(False, send_with_pynetdicom, watch)
    assert decoded_here == {"requests": 0, "pdus": 0}
    ours = served(True, send_with_pynetdicom, watch)
    assert len(ours) == 4
    assert ours == theirs
    # Data sets larger than the acceptor's largest PDU come in several.
    assert decoded_here["requests"] == 4
    assert decoded_here["pdus"] > 8
    assert ours[1][0]["_move_originator_application_entity_title"] == "MOVESCU"


def test_storescu_requests_are_received_as_pynetdicom_receives_them(tmp_path: Path, decoded_here):
    storescu = require_tool("storescu")
    paths = []
    for index, ds in enumerate(ct_datasets()):
        path = tmp_path / f"{index}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(str(path))

    def send(port: int) -> None:
        done = subprocess.run(
            [storescu, "-aec", "PACSWEB", "--max-send-pdu", "8192", "127.0.0.1", str(port), *paths],
            env={**os.environ, "TCP_NODELAY": "1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    theirs = served(False, send)
    ours = served(True, send)
    assert len(ours) == 4
    assert ours == theirs
    assert decoded_here["requests"] == 4
    assert decoded_here["pdus"] > 8
