"""Writes to the worklist. ``hl7_file_intake`` is the one way HL7 messages get in.

The web upload, the ``import_hl7`` command and the MLLP listener all call it. Every message in a
file is accepted or rejected on its own, in its own transaction: a rejected message changes no
order, and the reason names the message (position and control ID) and the field at fault.
"""

import logging
from dataclasses import dataclass, field
from enum import StrEnum

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from pydicom.uid import generate_uid

from worklist import hl7_orders
from worklist.hl7_reader import (
    ERR_DUPLICATE_KEY,
    ERR_INTERNAL,
    ERR_REQUIRED_FIELD_MISSING,
    ERR_SEGMENT_SEQUENCE,
    ERR_UNKNOWN_KEY,
    Chunk,
    Header,
    HL7Error,
    Message,
    decode_message,
    read_header,
    sha256,
    split_file,
)
from worklist.models import HL7Message, Order

log = logging.getLogger(__name__)


class Status(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class MessageOutcome:
    """What became of one message of a file. Position 0 is about the file, not a message.

    ``reason`` is a full sentence for people ("message 3 (MSH-10 'ABC123'): PID-3 patient ID
    is missing"); ``error`` keeps the structured fault for HL7 acknowledgements.
    """

    position: int
    control_id: str
    status: Status
    reason: str = ""
    header: Header = field(default_factory=Header)
    error: HL7Error | None = None

    @property
    def ok(self) -> bool:
        """Whether the message's changes are in the worklist (applied now or before)."""
        return self.status in (Status.STORED, Status.DUPLICATE)


def hl7_file_intake(*, data: bytes, source: str, source_detail: str) -> list[MessageOutcome]:
    """Read every HL7 message in ``data`` into the worklist; one outcome per message.

    ``source`` is one of ``HL7Message.Source`` ("upload", "import", "mllp"); ``source_detail``
    says more (file name and user, peer address). Never raises for bad data.
    """
    if source not in HL7Message.Source.values:
        raise ValueError(f"unknown HL7 source {source!r}; use one of {HL7Message.Source.values}")
    limit = settings.HL7_MAX_FILE_BYTES
    if len(data) > limit:
        return [
            MessageOutcome(
                0,
                "",
                Status.REJECTED,
                f"the file is {len(data):,} bytes, more than the limit of {limit:,}; "
                "nothing in it was read",
            )
        ]
    split = split_file(data)
    outcomes = []
    if split.stray:
        first = split.stray[0].decode("latin-1")[:30]
        outcomes.append(
            MessageOutcome(
                0,
                "",
                Status.REJECTED,
                f"{len(split.stray)} line(s) before the first MSH segment (starting '{first}') "
                "belong to no message and were ignored",
            )
        )
    elif not split.chunks:
        outcomes.append(
            MessageOutcome(0, "", Status.REJECTED, "no HL7 message found (no MSH segment)")
        )
    for chunk in split.chunks:
        outcomes.append(_intake_message(chunk, source, source_detail[:256]))
    return outcomes


def _intake_message(chunk: Chunk, source: str, source_detail: str) -> MessageOutcome:
    header = read_header(chunk.segments[0])
    name = f"message {chunk.position} ({header.label})"
    raw = b"\r".join(chunk.segments).decode("latin-1")
    record = HL7Message(
        source=source,
        source_detail=source_detail,
        position=chunk.position,
        control_id=header.control_id,
        message_type=header.message_type,
        version=header.version,
        sending_application=header.sending_application,
        sending_facility=header.sending_facility,
    )
    try:
        _check_bounds(chunk)
        raw, codec = decode_message(chunk, header)
        message = Message(raw, codec)
        if not header.control_id:
            raise HL7Error(
                "MSH-10", "message control ID is missing", ERR_REQUIRED_FIELD_MISSING, reject=True
            )
        parsed = hl7_orders.read(message)
    except HL7Error as exc:
        return _reject(record, raw, name, header, exc)

    record.raw = raw
    record.sha256 = sha256(raw)
    try:
        previous = _stored_message(header)
        if previous is not None:
            return _repeat(previous, record, name, header)
        with transaction.atomic():
            record.outcome = HL7Message.Outcome.STORED
            record.save()
            summary = _apply(parsed, record)
            record.reason = summary
            record.save(update_fields=["reason"])
    except HL7Error as exc:
        return _reject(record, raw, name, header, exc)
    except IntegrityError:
        # Another connection stored the same control ID between our check and our insert.
        previous = _stored_message(header)
        if previous is None:
            log.exception("could not store HL7 %s", name)
            return _failed(name, chunk, header)
        return _repeat(previous, record, name, header)
    except DatabaseError:
        log.exception("could not store HL7 %s", name)
        return _failed(name, chunk, header)
    return MessageOutcome(
        chunk.position, header.control_id, Status.STORED, f"{name}: {summary}", header
    )


def _check_bounds(chunk: Chunk) -> None:
    if len(chunk.segments) > settings.HL7_MAX_SEGMENTS:
        raise HL7Error(
            "",
            f"has {len(chunk.segments)} segments, more than the limit of {settings.HL7_MAX_SEGMENTS}",
            ERR_SEGMENT_SEQUENCE,
            reject=True,
        )
    if chunk.size > settings.HL7_MAX_MESSAGE_BYTES:
        raise HL7Error(
            "",
            f"is {chunk.size:,} bytes, more than the limit of {settings.HL7_MAX_MESSAGE_BYTES:,}",
            ERR_SEGMENT_SEQUENCE,
            reject=True,
        )


def _stored_message(header: Header) -> HL7Message | None:
    # At most one row matches (a unique constraint): no ordering needed.
    matches = HL7Message.objects.filter(
        outcome=HL7Message.Outcome.STORED,
        sending_application=header.sending_application,
        sending_facility=header.sending_facility,
        control_id=header.control_id,
    ).order_by()[:1]
    return next(iter(matches), None)


def _repeat(previous: HL7Message, record: HL7Message, name: str, header: Header) -> MessageOutcome:
    """The same control ID again: a no-op if the content is the same, else a rejection."""
    when = timezone.localtime(previous.received_at).strftime("%Y-%m-%d %H:%M")
    if previous.sha256 == record.sha256:
        return MessageOutcome(
            record.position,
            header.control_id,
            Status.DUPLICATE,
            f"{name}: already received on {when}; nothing changed",
            header,
        )
    error = HL7Error(
        "MSH-10",
        f"control ID '{header.control_id}' was already used on {when} by a different message "
        "from the same sender",
        ERR_DUPLICATE_KEY,
        reject=True,
    )
    return _reject(record, record.raw, name, header, error)


def _reject(
    record: HL7Message, raw: str, name: str, header: Header, error: HL7Error
) -> MessageOutcome:
    """Keep the rejected message and why, for the admin's message list; change nothing else."""
    reason = f"{name}: {error}"
    record.pk = None
    record.raw = raw
    record.sha256 = sha256(raw)
    record.outcome = HL7Message.Outcome.REJECTED
    record.reason = str(error)
    try:
        record.save()
    except DatabaseError:
        log.exception("could not record rejected HL7 %s", name)
    return MessageOutcome(
        record.position, header.control_id, Status.REJECTED, reason, header, error
    )


def _failed(name: str, chunk: Chunk, header: Header) -> MessageOutcome:
    error = HL7Error(
        "", "could not be stored (database error); nothing was changed, send it again", ERR_INTERNAL
    )
    return MessageOutcome(
        chunk.position, header.control_id, Status.REJECTED, f"{name}: {error}", header, error
    )


def _apply(parsed: hl7_orders.ParsedMessage, record: HL7Message) -> str:
    if parsed.kind == "patient":
        return _update_patient(parsed.patient, record)
    return "; ".join(_apply_order(request, parsed.patient, record) for request in parsed.orders)


def _update_patient(patient: hl7_orders.Patient, record: HL7Message) -> str:
    """ADT^A08/A31: the patient's new demographics on every open order of theirs."""
    orders = Order.objects.filter(patient_id=patient.patient_id, state__in=Order.OPEN_STATES)
    if patient.issuer:
        orders = orders.filter(issuer_of_patient_id__in=[patient.issuer, ""])
    fields = patient.order_fields()
    fields.pop("issuer_of_patient_id")
    count = orders.update(**fields, last_message=record, updated_at=timezone.now())
    return f"demographics of patient {patient.patient_id} updated on {count} open order(s)"


def _find_order(request: hl7_orders.OrderRequest) -> Order | None:
    """The order a message refers to: by filler order number, else by placer order number."""
    for column, number, where in (
        ("filler_order_number", request.filler, f"{request.label}-3"),
        ("placer_order_number", request.placer, f"{request.label}-2"),
    ):
        if not number:
            continue
        matches = list(Order.objects.select_for_update().filter(**{column: number}).order_by()[:2])
        if len(matches) > 1:
            raise HL7Error(
                where, f"order number '{number}' matches more than one order", ERR_UNKNOWN_KEY
            )
        if matches:
            return matches[0]
    return None


def _order_name(request: hl7_orders.OrderRequest) -> str:
    return request.filler or request.placer


def _apply_order(
    request: hl7_orders.OrderRequest, patient: hl7_orders.Patient, record: HL7Message
) -> str:
    order = _find_order(request)
    now = timezone.now()
    if request.action == hl7_orders.NEW:
        if order is not None:
            raise HL7Error(
                f"{request.label}-2",
                f"order '{_order_name(request)}' already exists ({order.get_state_display()}); "
                "changes are sent with ORC-1 XO",
                ERR_DUPLICATE_KEY,
            )
        fields = {**request.fields, **patient.order_fields()}
        fields["study_uid"] = fields["study_uid"] or generate_uid()
        order = Order.objects.create(
            **fields,
            placer_order_number=request.placer,
            filler_order_number=request.filler,
            message=record,
            last_message=record,
            created_at=now,
            updated_at=now,
        )
        return f"order {order.accession_number} created ({order.modality}, {order.scheduled_date:%Y-%m-%d})"

    if order is None:
        raise HL7Error(
            f"{request.label}-2",
            f"order '{_order_name(request)}' is not known (ORC-1 {request.control} needs an "
            "order created by NW)",
            ERR_UNKNOWN_KEY,
        )
    if request.action == hl7_orders.CHANGE:
        if not order.is_open:
            raise HL7Error(
                f"{request.label}-1",
                f"order '{_order_name(request)}' is {order.get_state_display()} and can no "
                "longer be changed",
            )
        fields = {**request.fields, **patient.order_fields()}
        # An order keeps its Study Instance UID unless the message names one.
        fields["study_uid"] = fields["study_uid"] or order.study_uid
        fields["placer_order_number"] = request.placer or order.placer_order_number
        fields["filler_order_number"] = request.filler or order.filler_order_number
        for name, value in fields.items():
            setattr(order, name, value)
        order.last_message = record
        order.updated_at = now
        order.save()
        return f"order {order.accession_number} changed"

    new_state = Order.State.CANCELLED if request.action == hl7_orders.CANCEL else request.status
    if order.state == new_state:
        return f"order {order.accession_number} was already {order.get_state_display()}"
    if not order.is_open:
        raise HL7Error(
            f"{request.label}-1",
            f"order '{_order_name(request)}' is {order.get_state_display()}; ORC-1 "
            f"{request.control} cannot change it",
        )
    order.state = new_state
    order.state_reason = f"ORC-1 {request.control} in message {record.control_id}"[:256]
    order.last_message = record
    order.updated_at = now
    order.save(update_fields=["state", "state_reason", "last_message", "updated_at"])
    return f"order {order.accession_number} {order.get_state_display()}"


class OrderNotOpen(Exception):
    """The order is done or cancelled already."""


def order_cancel(*, order_id: int, reason: str) -> Order:
    """Cancel an open order by hand (the admin's action): the worklist stops offering it."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if not order.is_open:
            raise OrderNotOpen(f"order {order.accession_number} is {order.get_state_display()}")
        order.state = Order.State.CANCELLED
        order.state_reason = reason[:256]
        order.updated_at = timezone.now()
        order.save(update_fields=["state", "state_reason", "updated_at"])
    return order


def orders_mark_arrived(*, study_uid: str, accession_number: str = "") -> int:
    """Mark the open orders whose study has arrived as done; returns how many changed.

    Called by the DICOM receiver after every stored instance, so it is one indexed UPDATE that
    touches nothing once the order is done. A database error is logged, never raised: the
    instance is already stored, and its sender must not be told otherwise.
    """
    match = Q(study_uid=study_uid) if study_uid else Q(pk__in=[])
    if accession_number.strip():
        match |= Q(accession_number=accession_number.strip())
    now = timezone.now()
    orders = Order.objects.filter(match, state__in=Order.OPEN_STATES)
    try:
        # Nearly every call finds nothing to do; a read first keeps those calls from taking
        # SQLite's write lock, which the receiver's ingest needs.
        if not orders.exists():
            return 0
        return orders.update(
            state=Order.State.DONE,
            state_reason="images arrived",
            arrived_at=now,
            updated_at=now,
        )
    except DatabaseError:
        log.exception("could not mark orders of study %s as arrived", study_uid)
        return 0
