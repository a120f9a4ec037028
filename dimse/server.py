"""Running the receiver: one listening socket, shared by several processes.

One Python process uses one core, so the receiver forks worker processes that all accept
associations from the same listening socket (bound once, before the fork): whichever process
is free takes the next connection. Each worker serves its associations on pynetdicom's threads.
The parent only supervises: it restarts a worker that dies and, on SIGTERM or Ctrl-C, asks every
worker to stop accepting and to finish the associations in flight (a second signal aborts them).
"""

import gc
import logging
import math
import os
import signal
import socket
import socketserver
import threading
import time
from dataclasses import dataclass

from django.db import connections
from pynetdicom import _config as pynetdicom_config
from pynetdicom.association import Association
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from dimse import ae as dimse_ae
from dimse import tuning

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 128
# How often a worker checks that its parent is still there (it stops when orphaned).
PARENT_CHECK_SECONDS = 1.0
# How long a worker lets a new connection wait for a less busy worker, per association it
# already serves.
ACCEPT_DEFER_SECONDS = 0.003


@dataclass(frozen=True)
class ReceiverOptions:
    ae_title: str
    max_pdu: int
    # For the whole receiver; each worker process gets its share.
    max_associations: int
    processes: int


class _RequestHandler(RequestHandler):
    def handle(self) -> None:
        # pynetdicom leaves Nagle's algorithm on: every small response would then wait for the
        # peer's delayed ACK (about 40 ms per C-STORE on Linux).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle()

    def _create_association(self) -> Association:
        return tuning.tune(super()._create_association())


class _SharedSocketServer(ThreadedAssociationServer):
    """An association server that accepts from a socket bound and listening already."""

    def __init__(self, *args, listen_socket: socket.socket, **kwargs) -> None:
        self._listen_socket = listen_socket
        super().__init__(*args, request_handler=_RequestHandler, **kwargs)

    def server_bind(self) -> None:
        self.socket.close()
        self.socket = self._listen_socket
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        # The parent process called listen() before forking the workers.
        pass

    def _handle_request_noblock(self) -> None:
        # Every worker wakes up for a new connection and the first to call accept() takes it,
        # which is often a busy one: its associations then share one core while another worker
        # idles (4 senders on 2 workers went 3 + 1). A busy worker tries a little later, so
        # an idle one takes the connection; if none does, the busy one still gets it.
        busy = len(self.active_associations)
        if busy:
            time.sleep(ACCEPT_DEFER_SECONDS * min(busy, 10))
        super()._handle_request_noblock()

    def shutdown(self) -> None:
        # pynetdicom's shutdown() also unregisters the server from its AE, which only knows the
        # servers it started itself (this one is made with make_server).
        socketserver.BaseServer.shutdown(self)
        self.server_close()

    def server_close(self) -> None:
        # Close this process's descriptor only: shutdown() would stop the socket that the other
        # workers still accept from.
        self.socket.close()


def listen(bind: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.create_server((bind, port), family=family, backlog=LISTEN_BACKLOG)
    # Every worker waits on this socket; those that lose the race for a connection must get
    # "nothing to accept" at once rather than block inside accept().
    sock.setblocking(False)
    return sock


def run(*, sock: socket.socket, options: ReceiverOptions) -> None:
    """Serve on ``sock`` until SIGTERM or SIGINT: in this process, or in forked workers."""
    host, port = sock.getsockname()[:2]
    log.info(
        "DICOM receiver %s listening on %s:%d (%d process%s)",
        options.ae_title,
        host,
        port,
        options.processes,
        "" if options.processes == 1 else "es",
    )
    if options.processes == 1:
        serve(sock=sock, options=options, handle_sigint=True)
        return
    _supervise(sock=sock, options=options)


def make_server(*, sock: socket.socket, options: ReceiverOptions) -> ThreadedAssociationServer:
    """The association server of one process, accepting from ``sock`` once served forever."""
    # The standard handlers log and format every PDU; pacsweb logs one line per association.
    pynetdicom_config.LOG_HANDLER_LEVEL = "none"
    per_process = math.ceil(options.max_associations / options.processes)
    ae = dimse_ae.build_ae(
        ae_title=options.ae_title, max_pdu=options.max_pdu, max_associations=per_process
    )
    return ae.make_server(
        sock.getsockname(),
        contexts=tuning.PresentationContexts(ae.supported_contexts),
        evt_handlers=dimse_ae.event_handlers(),
        server_class=_SharedSocketServer,
        listen_socket=sock,
    )


def serve(*, sock: socket.socket, options: ReceiverOptions, handle_sigint: bool) -> None:
    """Serve associations from ``sock`` in this process until asked to stop."""
    server = make_server(sock=sock, options=options)
    # What is loaded by now (Django, pydicom's and pynetdicom's tables) lives as long as the
    # process: the cyclic garbage collector, which each instance's header objects set off,
    # need not walk it again.
    gc.freeze()
    stop_requested = threading.Event()
    # A second SIGINT (Ctrl-C pressed again) or, in a worker, a second SIGTERM from the parent
    # aborts the associations in flight. A SIGTERM after a Ctrl-C (as a supervisor sends when
    # the terminal has already interrupted the whole process group) still waits for them.
    escalate = signal.SIGINT if handle_sigint else signal.SIGTERM

    def on_signal(signum: int, frame: object) -> None:
        if stop_requested.is_set() and signum == escalate:
            active = server.active_associations
            log.warning("stopping now: aborting %d associations", len(active))
            for assoc in active:
                assoc.abort()
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    # A worker ignores Ctrl-C: the terminal sends it to the whole process group, and the parent
    # turns it into one SIGTERM per worker.
    signal.signal(signal.SIGINT, on_signal if handle_sigint else signal.SIG_IGN)

    parent = os.getppid()
    thread = threading.Thread(target=server.serve_forever, name="dicom-accept", daemon=True)
    thread.start()
    while not stop_requested.wait(PARENT_CHECK_SECONDS):
        if not handle_sigint and os.getppid() != parent:
            log.warning("the receiver's parent process is gone: stopping")
            stop_requested.set()
    stop(server)
    connections.close_all()


def stop(server: ThreadedAssociationServer) -> None:
    """Stop accepting, then wait for the associations in flight to end."""
    server.shutdown()
    in_flight = []
    for assoc in server.active_associations:
        if assoc.is_established:
            in_flight.append(assoc)
        else:
            _drop_unassociated(assoc)
    if in_flight:
        log.info("waiting for %d associations in flight", len(in_flight))
    for assoc in in_flight:
        assoc.join()


def _drop_unassociated(assoc: Association) -> None:
    """Close a connection on which no association was requested yet (a port check, a slow peer).

    pynetdicom waits the whole ACSE timeout for its A-ASSOCIATE request, even once the peer has
    gone; nothing was received on it, so the receiver need not wait.
    """
    sock = assoc.dul.socket.socket if assoc.dul.socket else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    # With the connection closed, the upper layer returns to idle and kill() can stop it; the
    # association's own thread (a daemon) still ends at its timeout, and holds nothing.
    assoc.kill()


def _supervise(*, sock: socket.socket, options: ReceiverOptions) -> None:
    stopping = False
    workers: set[int] = set()

    def start_worker() -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                serve(sock=sock, options=options, handle_sigint=False)
            except BaseException:
                log.exception("receiver process failed")
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        workers.add(pid)

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        # The first signal asks the workers to finish what is in flight; only a second Ctrl-C
        # asks them again, which makes them abort it.
        if stopping and signum != signal.SIGINT:
            return
        stopping = True
        for pid in workers:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    # Workers must not inherit a database connection: each opens its own.
    connections.close_all()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for _ in range(options.processes):
        start_worker()
    while workers:
        pid, status = os.wait()
        workers.discard(pid)
        if not stopping:
            log.error(
                "receiver process %d ended unexpectedly (%s): starting another",
                pid,
                _describe_exit(status),
            )
            start_worker()
    sock.close()


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
