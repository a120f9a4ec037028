"""A worklist of orders from real HL7 messages, and a worklist SCP on a free port, for C-FIND tests."""

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pynetdicom.association import Association
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from dimse import ae as dimse_ae
from tests.worklist import hl7_samples as s
from worklist.models import Order
from worklist.services import Status, hl7_file_intake


class _NoDelayHandler(RequestHandler):
    def handle(self) -> None:
        # Without TCP_NODELAY every response waits for the peer's delayed ACK (about 40 ms).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle()


def no_delay(assoc: Association) -> Association:
    """The SCU side of the same: pynetdicom leaves Nagle's algorithm on."""
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return assoc


@contextmanager
def worklist_scp() -> Iterator[int]:
    """pacsweb's own application entity (dimse.ae), serving on 127.0.0.1; yields the port."""
    ae = dimse_ae.build_ae(ae_title="PACSWEB", max_pdu=0, max_associations=4)
    server = ae.make_server(
        ("127.0.0.1", 0),
        evt_handlers=dimse_ae.event_handlers(),
        server_class=ThreadedAssociationServer,
        request_handler=_NoDelayHandler,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        # pynetdicom's own shutdown() also unregisters the server from the AE, which only knows
        # the servers that start_server() made.
        socketserver.BaseServer.shutdown(server)
        server.server_close()
        thread.join()


def load_worklist() -> dict[str, Order]:
    """Five orders by accession number, through the one intake path:

    ACC1001 CT at CT01 on 2024-03-20 09:30 (Müller), ACC1002 CT at CT01 on 2024-03-21 08:00,
    ACC1003 CT at CT02 on 2024-03-20 14:00 then cancelled, RAD55001 CR without AE title on
    2024-03-16 11:00 (O'Neil), ACC7001 MR at MR_AE_01 on 2024-03-21 14:30 (Yamada).
    """
    messages = [
        s.radis_orm(),
        s.radis_orm(
            "RADIS000102",
            placer="PLC1002",
            filler="FIL1002",
            accession="ACC1002",
            start="20240321080000",
        ),
        s.radis_orm(
            "RADIS000103",
            placer="PLC1003",
            filler="FIL1003",
            accession="ACC1003",
            start="20240320140000",
            station="CT02",
        ),
        s.radis_orm("RADIS000104", order_control="CA", placer="PLC1003", filler="FIL1003"),
    ]
    # RADIS declares ISO 8859/1 in MSH-18; the other two send UTF-8.
    data = b"".join(s.text(m).encode("latin-1") for m in messages)
    data += s.text(s.medris_orm()).encode("utf-8") + s.text(s.ofill_omi()).encode("utf-8")
    outcomes = hl7_file_intake(data=data, source="import", source_detail="worklist tests")
    assert all(o.status == Status.STORED for o in outcomes), [o.reason for o in outcomes]
    return {o.accession_number: o for o in Order.objects.all()}
