"""Handlers of the receiver's DIMSE services, run on pynetdicom's association threads.

Each C-STORE goes through ``studies.services.instance_ingest`` and is answered only once the
instance is on disk and indexed. Every ingest outcome maps to one named C-STORE status (PS3.4
Annex B.2.3), with the reason in the Error Comment, and the association goes on after a failure.
"""

import io
import logging
import re
import threading
import weakref
from dataclasses import dataclass, field

from django.db import close_old_connections, connections
from pydicom.dataset import Dataset
from pynetdicom.association import Association
from pynetdicom.events import Event

from studies.dicom_header import is_valid_uid, part10_prefix_for
from studies.models import Instance, Study
from studies.services import DUPLICATE_SAME_CONTENT, IngestOutcome, Status, instance_ingest
from worklist.services import orders_mark_arrived

log = logging.getLogger(__name__)

SUCCESS = 0x0000
# Stored before, with other content: the archive keeps its first copy (the documented duplicate
# policy), so what it holds is not what was just sent. PS3.4 B.2.3 has no duplicate status;
# "Coercion of Data Elements" is the warning that says exactly that, and a warning (unlike a
# failure) does not make the sender retry for ever.
WARNING_DUPLICATE_DIFFERS = 0xB000
DUPLICATE_DIFFERS_COMMENT = "kept the earlier, different instance with this UID"
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
# Failures of the archive rather than of the data (database down, disk error): worth a retry.
PROCESSING_FAILURE = 0xC001
INTERNAL_ERROR = 0xC002
# Error Comment is a Long String (PS3.7 C.4.2, PS3.5 6.2): at most 64 characters.
ERROR_COMMENT_MAX = 64
_UNSAFE_COMMENT = re.compile(r"[^\x20-\x5b\x5d-\x7e]")


@dataclass
class AssociationCounts:
    stored: int = 0
    duplicates: int = 0
    failed: int = 0
    # Studies that this association has stored instances of, and so told the worklist about.
    studies: set[str] = field(default_factory=set)
    # Whether the next C-STORE must first check the thread's database connection.
    check_connection: bool = True


_counts: "weakref.WeakKeyDictionary[Association, AssociationCounts]" = weakref.WeakKeyDictionary()
_counts_lock = threading.Lock()


def _counts_of(assoc: Association) -> AssociationCounts:
    with _counts_lock:
        return _counts.setdefault(assoc, AssociationCounts())


def _peer(assoc: Association) -> str:
    requestor = assoc.requestor
    return f"{requestor.ae_title} at {requestor.address}:{requestor.port}"


def handle_accepted(event: Event) -> None:
    _counts_of(event.assoc)
    log.debug("association from %s accepted", _peer(event.assoc))


def handle_finished(event: Event) -> None:
    """Log the association's summary and give back its thread's database connection."""
    with _counts_lock:
        counts = _counts.pop(event.assoc, AssociationCounts())
    how = "released" if event.event.name == "EVT_RELEASED" else "aborted"
    log.info(
        "association from %s %s: %d stored, %d duplicates, %d failed",
        _peer(event.assoc),
        how,
        counts.stored,
        counts.duplicates,
        counts.failed,
    )
    # The association's thread ends now; its connection would otherwise linger until collected.
    connections.close_all()


def handle_echo(event: Event) -> int:
    return SUCCESS


def handle_store(event: Event) -> int | Dataset:
    counts = _counts_of(event.assoc)
    if counts.check_connection:
        # Each association runs on its own thread with its own connection, which may be stale
        # (healthchecks' guard for its SMTP listener). It is checked when the association
        # starts storing and after a failure, not before every C-STORE: with SQLite's
        # CONN_MAX_AGE of 0 that would open a new connection for every instance. The
        # association's connection is closed when it ends (handle_finished).
        close_old_connections()
        counts.check_connection = False
    request = event.request
    sop_class_uid = str(request.AffectedSOPClassUID or "")
    sop_instance_uid = str(request.AffectedSOPInstanceUID or "")
    if not (is_valid_uid(sop_class_uid) and is_valid_uid(sop_instance_uid)):
        counts.failed += 1
        return _status(CANNOT_UNDERSTAND, "invalid Affected SOP Class or Instance UID")
    # The dataset exactly as received, behind a file meta group that names the transfer syntax
    # of its presentation context: the same bytes pynetdicom's encoded_dataset() gives, without
    # building the group with pydicom, which would cost as much as the rest of the header work.
    prefix = part10_prefix_for(
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax_uid=str(event.context.transfer_syntax),
    )
    try:
        with request.DataSet.getbuffer() as dataset:
            outcome = instance_ingest(
                file=_Concatenation(prefix, dataset),
                source=Instance.Source.RECEIVER,
                source_detail=event.assoc.requestor.ae_title,
                # A modality sends new images; an association that resends a study shows it
                # with its first instance, and the rest are looked up before being written.
                duplicates_likely=counts.duplicates > 0,
            )
    except Exception:
        log.exception("C-STORE from %s failed", _peer(event.assoc))
        counts.failed += 1
        counts.check_connection = True
        return _status(INTERNAL_ERROR, "internal error in the archive")
    if outcome.ok:
        if outcome.status == Status.STORED:
            counts.stored += 1
            if outcome.study_uid not in counts.studies:
                counts.studies.add(outcome.study_uid)
                _study_arrived(outcome.study_uid)
        else:
            counts.duplicates += 1
    else:
        counts.failed += 1
        counts.check_connection = True
        log.warning(
            "C-STORE from %s of %s: %s: %s",
            _peer(event.assoc),
            outcome.sop_uid or event.request.AffectedSOPInstanceUID,
            outcome.status,
            outcome.reason,
        )
    return _response(outcome)


class _Concatenation:
    """A read-only, seekable file of ``head`` then ``tail``, neither of them copied.

    The received dataset is as large as the instance: ingest reads it where it lies.
    """

    # Not a file on disk: pydicom then reads deferred values through this object.
    name = None

    def __init__(self, head: bytes, tail: memoryview) -> None:
        self._head, self._tail = memoryview(head), tail
        self._split = len(head)
        self._size = len(head) + len(tail)
        self._position = 0

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence == io.SEEK_END:
            offset += self._size
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence ({whence})")
        if offset < 0:
            raise ValueError("negative seek position")
        self._position = offset
        return offset

    def view_from(self, position: int) -> memoryview | None:
        """The bytes from ``position`` to the end without a copy, when they are all the tail's."""
        if position < self._split:
            return None
        return self._tail[position - self._split :]

    def read(self, size: int = -1) -> bytes:
        # pydicom reads a header in small pieces (each element's tag, then its value): the
        # common case comes first.
        start = self._position
        end = self._size if size is None or size < 0 else min(start + size, self._size)
        if start >= end:
            return b""
        self._position = end
        split = self._split
        if start >= split:
            return self._tail[start - split : end - split].tobytes()
        if end <= split:
            return self._head[start:end].tobytes()
        return self._head[start:].tobytes() + self._tail[: end - split].tobytes()


def _study_arrived(study_uid: str) -> None:
    """The study a worklist order asked for has arrived: that order is done.

    Once per study and association (a modality sends a study per association), on its first
    stored instance: the rest of the study cannot reopen the order.
    """
    accession = (
        Study.objects.filter(study_uid=study_uid).values_list("accession_number", flat=True).first()
    )
    orders_mark_arrived(study_uid=study_uid, accession_number=accession or "")


def _response(outcome: IngestOutcome) -> int | Dataset:
    if outcome.status == Status.STORED:
        return SUCCESS
    if outcome.status == Status.DUPLICATE:
        # Identical bytes again: a retransmission, and the instance is safely in the archive.
        if outcome.reason == DUPLICATE_SAME_CONTENT:
            return SUCCESS
        return _status(WARNING_DUPLICATE_DIFFERS, DUPLICATE_DIFFERS_COMMENT)
    if outcome.status == Status.REJECTED:
        return _status(CANNOT_UNDERSTAND, outcome.reason)
    if outcome.out_of_space:
        return _status(OUT_OF_RESOURCES, outcome.reason)
    return _status(PROCESSING_FAILURE, outcome.reason)


def _status(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    # The reason may quote untrusted values: keep the default character repertoire and no
    # backslash, which would split the value in two (PS3.5 6.1.2, 6.2).
    ds.ErrorComment = _UNSAFE_COMMENT.sub("?", comment)[:ERROR_COMMENT_MAX]
    return ds
