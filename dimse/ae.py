"""pacsweb's DICOM application entity: the services it offers and the handler of each.

A new service is one more entry in ``presentation_contexts()`` and one more binding in
``event_handlers()``; the receiver command builds everything else from these two lists.
"""

from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.events import EventHandlerType
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

from dimse import handlers, worklist_find

# Uncompressed syntaxes, for services whose messages carry no pixel data.
UNCOMPRESSED_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
]

# Instances are stored exactly as received, so every syntax a modality commonly sends is
# accepted and none is ever transcoded here. When a sender proposes several syntaxes in one
# presentation context, pynetdicom accepts the first of this list that the sender proposed, so the
# order says what the archive prefers. Compressed syntaxes come first, lossless before lossy, as
# in dcmtk's storescp: a sender offers the syntax its images are held in plus what it can convert
# them to, and not every sender can decompress (dcmtk's storescu cannot), so preferring
# uncompressed data would refuse images held compressed. Deflate and the retired big endian
# syntax come last.
STORAGE_TRANSFER_SYNTAXES = [
    JPEGLSLossless,
    JPEG2000Lossless,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEGLosslessSV1,
    JPEGLossless,
    RLELossless,
    JPEGLSNearLossless,
    JPEG2000,
    HTJ2K,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]


def presentation_contexts() -> list[tuple[str, list[str]]]:
    """Every (abstract syntax, transfer syntaxes) the receiver accepts as an SCP."""
    return [
        (Verification, UNCOMPRESSED_TRANSFER_SYNTAXES),
        (ModalityWorklistInformationFind, UNCOMPRESSED_TRANSFER_SYNTAXES),
        *((cx.abstract_syntax, STORAGE_TRANSFER_SYNTAXES) for cx in AllStoragePresentationContexts),
    ]


def event_handlers() -> list[EventHandlerType]:
    """The (event, handler) bindings of every association."""
    return [
        (evt.EVT_C_ECHO, handlers.handle_echo),
        (evt.EVT_C_STORE, handlers.handle_store),
        (evt.EVT_C_FIND, worklist_find.handle_worklist_find),
        (evt.EVT_ACCEPTED, handlers.handle_accepted),
        (evt.EVT_RELEASED, handlers.handle_finished),
        (evt.EVT_ABORTED, handlers.handle_finished),
    ]


def build_ae(*, ae_title: str, max_pdu: int, max_associations: int) -> AE:
    """The application entity of one receiver process.

    ``max_pdu`` bounds what one association can make the receiver buffer at a time and
    ``max_associations`` how many are served at once; together they bound its memory.
    """
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = max_pdu
    ae.maximum_associations = max_associations
    # A peer that stops talking mid-association is dropped rather than held for ever.
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    ae.network_timeout = 60
    for abstract_syntax, transfer_syntaxes in presentation_contexts():
        ae.add_supported_context(abstract_syntax, transfer_syntaxes)
    return ae
