"""The DICOMDIR of a zip download: a PS3.10 file-set index built in memory from the index.

A zip made "like a CD" holds ``DICOMDIR`` and the instances under file IDs of 8-character
upper-case components (PS3.10 8.2, 8.5): ``DICOM/PA000001/ST000001/SE000001/IM000001``. The
DICOMDIR (Basic Directory IOD, PS3.3 F.3; Media Storage Directory Storage) holds one PATIENT,
STUDY and SERIES record per entity and one leaf record per instance, of the type its SOP class
asks for (PS3.3 F.4: IMAGE, SR DOCUMENT, PRESENTATION, KEY OBJECT DOC, RT DOSE, ENCAP DOC, ...).

It is built before the zip's first byte, so the zip's Content-Length is exact: PATIENT, STUDY,
SERIES and IMAGE records come from the index columns alone; other leaf records take their keys
from the DICOM JSON header that ingest kept (``Instance.metadata``), so no stored file is read.

Type 1 keys must not be empty (PS3.3 F.5), but real data often lacks them (an empty Study ID is
common). The rule used here, always the same so the DICOMDIR is byte-identical on every request:
a missing Patient ID becomes ``UNKNOWN-<n>``; a missing Study Date the date of its first series
that has one, else the date the study was received (dcmtk's dcmmkdir also takes another date of
the file); a missing Study Time ``000000``; a missing Study ID, Series Number or Instance Number
the entity's position (1, 2, ...) under its parent; a missing Modality ``OT``; missing content
dates and times those of the study; missing labels ``UNLABELED``; a missing SR completion flag
``PARTIAL`` and verification flag ``UNVERIFIED``. A leaf whose record type needs something that
cannot be defaulted (an SR without its Concept Name) gets an IMAGE record, so it is still listed.
"""

import datetime
import logging
import re
import struct
import uuid
from dataclasses import dataclass, field

import pydicom.uid as sop
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.fileset import DIRECTORY_RECORDERS
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, MediaStorageDirectoryStorage

from studies.dicom_header import part10_prefix

log = logging.getLogger(__name__)

FILE_SET_ID = "PACSWEB"
ROOT_FOLDER = "DICOM"
# Components are two letters and six digits: 8 characters, PS3.10 8.5.
_MAX_PER_FOLDER = 999_999
# The namespace of the DICOMDIR's own SOP Instance UID, derived from its content (PS3.5 B.2).
_UID_NAMESPACE = uuid.UUID("9d1b6b7e-5f0c-4c55-9a59-0f6f2c1e7a31")

_RECORD_TYPES = {
    "PRESENTATION": (
        sop.GrayscaleSoftcopyPresentationStateStorage,
        sop.ColorSoftcopyPresentationStateStorage,
        sop.PseudoColorSoftcopyPresentationStateStorage,
        sop.BlendingSoftcopyPresentationStateStorage,
        sop.XAXRFGrayscaleSoftcopyPresentationStateStorage,
        sop.BasicStructuredDisplayStorage,
        sop.AdvancedBlendingPresentationStateStorage,
    ),
    "WAVEFORM": (
        sop.BasicVoiceAudioWaveformStorage,
        sop.TwelveLeadECGWaveformStorage,
        sop.GeneralECGWaveformStorage,
        sop.AmbulatoryECGWaveformStorage,
        sop.HemodynamicWaveformStorage,
        sop.CardiacElectrophysiologyWaveformStorage,
        sop.ArterialPulseWaveformStorage,
        sop.RespiratoryWaveformStorage,
        sop.GeneralAudioWaveformStorage,
        sop.RoutineScalpElectroencephalogramWaveformStorage,
        sop.ElectromyogramWaveformStorage,
        sop.ElectrooculogramWaveformStorage,
        sop.SleepElectroencephalogramWaveformStorage,
        sop.MultichannelRespiratoryWaveformStorage,
        sop.BodyPositionWaveformStorage,
    ),
    "SR DOCUMENT": (
        sop.BasicTextSRStorage,
        sop.EnhancedSRStorage,
        sop.ComprehensiveSRStorage,
        sop.Comprehensive3DSRStorage,
        sop.ExtensibleSRStorage,
        sop.MammographyCADSRStorage,
        sop.ChestCADSRStorage,
        sop.ColonCADSRStorage,
        sop.ProcedureLogStorage,
        sop.XRayRadiationDoseSRStorage,
        sop.RadiopharmaceuticalRadiationDoseSRStorage,
        sop.PatientRadiationDoseSRStorage,
        sop.AcquisitionContextSRStorage,
        sop.SimplifiedAdultEchoSRStorage,
        sop.ImplantationPlanSRStorage,
        sop.MacularGridThicknessAndVolumeReportStorage,
        sop.SpectaclePrescriptionReportStorage,
        sop.PlannedImagingAgentAdministrationSRStorage,
        sop.PerformedImagingAgentAdministrationSRStorage,
    ),
    "KEY OBJECT DOC": (sop.KeyObjectSelectionDocumentStorage,),
    "SPECTROSCOPY": (sop.MRSpectroscopyStorage,),
    "RAW DATA": (sop.RawDataStorage,),
    "REGISTRATION": (sop.SpatialRegistrationStorage, sop.DeformableSpatialRegistrationStorage),
    "FIDUCIAL": (sop.SpatialFiducialsStorage,),
    "VALUE MAP": (sop.RealWorldValueMappingStorage,),
    "STEREOMETRIC": (sop.StereometricRelationshipStorage,),
    "ENCAP DOC": (
        sop.EncapsulatedPDFStorage,
        sop.EncapsulatedCDAStorage,
        sop.EncapsulatedSTLStorage,
        sop.EncapsulatedOBJStorage,
        sop.EncapsulatedMTLStorage,
    ),
    "RT DOSE": (sop.RTDoseStorage,),
    "RT STRUCTURE SET": (sop.RTStructureSetStorage,),
    "RT PLAN": (sop.RTPlanStorage, sop.RTIonPlanStorage),
    "RT TREAT RECORD": (
        sop.RTBeamsTreatmentRecordStorage,
        sop.RTBrachyTreatmentRecordStorage,
        sop.RTTreatmentSummaryRecordStorage,
        sop.RTIonBeamsTreatmentRecordStorage,
    ),
    "RADIOTHERAPY": (
        sop.RTPhysicianIntentStorage,
        sop.RTSegmentAnnotationStorage,
        sop.RTRadiationSetStorage,
        sop.CArmPhotonElectronRadiationStorage,
        sop.TomotherapeuticRadiationStorage,
        sop.RoboticArmRadiationStorage,
        sop.RTRadiationRecordSetStorage,
        sop.RTRadiationSalvageRecordStorage,
        sop.TomotherapeuticRadiationRecordStorage,
        sop.CArmPhotonElectronRadiationRecordStorage,
        sop.RoboticRadiationRecordStorage,
        sop.RTRadiationSetDeliveryInstructionStorage,
        sop.RTTreatmentPreparationStorage,
    ),
    "SURFACE": (sop.SurfaceSegmentationStorage,),
    "SURFACE SCAN": (sop.SurfaceScanMeshStorage, sop.SurfaceScanPointCloudStorage),
    "TRACT": (sop.TractographyResultsStorage,),
    "ASSESSMENT": (sop.ContentAssessmentResultsStorage,),
    "MEASUREMENT": (
        sop.LensometryMeasurementsStorage,
        sop.AutorefractionMeasurementsStorage,
        sop.KeratometryMeasurementsStorage,
        sop.SubjectiveRefractionMeasurementsStorage,
        sop.VisualAcuityMeasurementsStorage,
        sop.OphthalmicAxialMeasurementsStorage,
        sop.OphthalmicVisualFieldStaticPerimetryMeasurementsStorage,
    ),
}
RECORD_TYPE_BY_SOP_CLASS = {
    str(uid): record_type for record_type, uids in _RECORD_TYPES.items() for uid in uids
}
_ENCAPSULATED_MIME_TYPES = {
    sop.EncapsulatedPDFStorage: "application/pdf",
    sop.EncapsulatedCDAStorage: "text/XML",
    sop.EncapsulatedSTLStorage: "model/stl",
    sop.EncapsulatedOBJStorage: "model/obj",
    sop.EncapsulatedMTLStorage: "model/mtl",
}


def record_type(sop_class_uid: str) -> str:
    """The leaf record type for instances of a SOP class (PS3.3 F.4); IMAGE for any image."""
    return RECORD_TYPE_BY_SOP_CLASS.get(sop_class_uid, "IMAGE")


@dataclass(eq=False)
class ImageNode:
    """One instance (of any kind: "image" is the tree's leaf level)."""

    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    number: int | None
    # The stored header, for leaf records whose keys the index does not hold.
    header: Dataset | None = None
    # Set by assign_file_ids: the path in the file-set, one component per folder.
    file_id: tuple[str, ...] = ()

    @property
    def needs_header(self) -> bool:
        return record_type(self.sop_class_uid) != "IMAGE"


@dataclass(eq=False)
class SeriesNode:
    series_uid: str
    modality: str
    number: int | None
    images: list[ImageNode] = field(default_factory=list)


@dataclass(eq=False)
class StudyNode:
    study_uid: str
    date: datetime.date | None
    time: str
    description: str
    study_id: str
    accession_number: str
    received_at: datetime.datetime
    # The first Series Date among its series, for a study without a Study Date.
    series_date: datetime.date | None = None
    series: list[SeriesNode] = field(default_factory=list)


@dataclass(eq=False)
class PatientNode:
    patient_id: str
    name: str
    studies: list[StudyNode] = field(default_factory=list)


def assign_file_ids(patients: list[PatientNode]) -> None:
    """Give every instance its file ID: ``DICOM/PAnnnnnn/STnnnnnn/SEnnnnnn/IMnnnnnn``."""
    for p, patient in enumerate(patients, 1):
        for s, study in enumerate(patient.studies, 1):
            for r, series in enumerate(study.series, 1):
                for i, image in enumerate(series.images, 1):
                    if max(p, s, r, i) > _MAX_PER_FOLDER:
                        raise ValueError("too many entities for 8-character DICOMDIR file IDs")
                    image.file_id = (
                        ROOT_FOLDER,
                        f"PA{p:06d}",
                        f"ST{s:06d}",
                        f"SE{r:06d}",
                        f"IM{i:06d}",
                    )


# -- Values made valid for their VR (PS3.5 6.2) ---------------------------------------------------

_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_CS_ALLOWED = re.compile(r"[^A-Z0-9 _]")


def _text(value: str, limit: int) -> str:
    """A single-valued string: no control characters or backslashes (the VM separator)."""
    cleaned = "".join(c if c >= " " and c != "\x7f" else " " for c in value).replace("\\", "/")
    return cleaned.strip()[:limit].rstrip()


def _code_string(value: str, limit: int = 16) -> str:
    return _CS_ALLOWED.sub("_", value.upper().strip())[:limit].rstrip()


def _person_name(value: str) -> str:
    groups = [_text(group, 64) for group in value.replace("\\", "/").split("=")[:3]]
    return "=".join(groups).rstrip("=")


def _integer(value: int | None, default: int) -> int:
    if value is None or not -(2**31) <= value < 2**31:
        return default
    return value


def _study_date(study: StudyNode) -> str:
    date = study.date or study.series_date
    if date is not None:
        return date.strftime("%Y%m%d")
    return study.received_at.astimezone(datetime.UTC).strftime("%Y%m%d")


def _study_time(study: StudyNode) -> str:
    time = study.time.strip()
    return time if _TIME.match(time) else "000000"


# -- Records --------------------------------------------------------------------------------------
#
# PATIENT, STUDY, SERIES and IMAGE records (nearly all of a DICOMDIR) are encoded directly, a
# few short elements each: building them as pydicom datasets cost a millisecond per record, so a
# 10,000-image study would wait seconds for its first byte. Other leaf records go through pydicom
# (``DIRECTORY_RECORDERS``). The tests check that both encodings give the same bytes.

# (tag, VR, value) with the value as text, a list of texts (multi-valued) or an int (UL/US/IS).
Element = tuple[int, str, str | list[str] | int]

_BINARY = {"UL": "<I", "US": "<H"}


def _encode_elements(elements: list[Element]) -> bytes:
    """Explicit VR little endian (PS3.5 7.1.2) for short elements: 2-byte lengths, even values."""
    texts = [v for _, vr, v in elements if vr not in _BINARY]
    flat = [t for v in texts for t in (v if isinstance(v, list) else [str(v)])]
    utf8 = not all(text.isascii() for text in flat)
    if utf8:
        # Type 1C in every record that holds text outside the default repertoire (PS3.3 F.3).
        elements = [*elements, (0x00080005, "CS", "ISO_IR 192")]
    parts = []
    for tag, vr, value in sorted(elements, key=lambda element: element[0]):
        if vr in _BINARY:
            data = struct.pack(_BINARY[vr], value)
        else:
            text = "\\".join(value) if isinstance(value, list) else str(value)
            data = text.encode("utf-8" if utf8 else "ascii")
            if len(data) % 2:
                data += b"\x00" if vr == "UI" else b" "
        parts.append(struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(data)) + data)
    return b"".join(parts)


def _record_header(kind: str) -> list[Element]:
    return [
        (0x00041400, "UL", 0),  # Offset of the next record: filled in later.
        (0x00041410, "US", 0xFFFF),  # Record in use.
        (0x00041420, "UL", 0),  # Offset of the first lower-level record: filled in later.
        (0x00041430, "CS", kind),
    ]


def _patient_record(patient: PatientNode, ordinal: int) -> bytes:
    return _encode_elements(
        [
            *_record_header("PATIENT"),
            (0x00100010, "PN", _person_name(patient.name)),
            (0x00100020, "LO", _text(patient.patient_id, 64) or f"UNKNOWN-{ordinal}"),
        ]
    )


def _study_record(study: StudyNode, ordinal: int) -> bytes:
    return _encode_elements(
        [
            *_record_header("STUDY"),
            (0x00080020, "DA", _study_date(study)),
            (0x00080030, "TM", _study_time(study)),
            (0x00080050, "SH", _text(study.accession_number, 16)),
            (0x00081030, "LO", _text(study.description, 64)),
            (0x0020000D, "UI", study.study_uid),
            (0x00200010, "SH", _text(study.study_id, 16) or str(ordinal)),
        ]
    )


def _series_record(series: SeriesNode, ordinal: int) -> bytes:
    return _encode_elements(
        [
            *_record_header("SERIES"),
            (0x00080060, "CS", _code_string(series.modality) or "OT"),
            (0x0020000E, "UI", series.series_uid),
            (0x00200011, "IS", _integer(series.number, ordinal)),
        ]
    )


def _reference(image: ImageNode) -> list[Element]:
    return [
        (0x00041500, "CS", list(image.file_id)),
        (0x00041510, "UI", image.sop_class_uid),
        (0x00041511, "UI", image.sop_uid),
        (0x00041512, "UI", image.transfer_syntax_uid),
    ]


def _short_element(tag: int, vr: str, text: str) -> bytes:
    """One ASCII text element, explicit VR little endian with a 2-byte length (PS3.5 7.1.2)."""
    data = text.encode("ascii")
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(data)) + data


_IMAGE_RECORD_HEADER = _encode_elements(_record_header("IMAGE"))


def _image_record(image: ImageNode, ordinal: int) -> bytes:
    """An IMAGE record, the bulk of a DICOMDIR, put together from its elements in tag order.

    Its values are all ASCII (UIDs, file IDs, a number), so it never needs a character set.
    """
    return b"".join(
        (
            _IMAGE_RECORD_HEADER,
            _short_element(0x00041500, "CS", "\\".join(image.file_id)),
            _short_element(0x00041510, "UI", image.sop_class_uid),
            _short_element(0x00041511, "UI", image.sop_uid),
            _short_element(0x00041512, "UI", image.transfer_syntax_uid),
            _short_element(0x00200013, "IS", str(_integer(image.number, ordinal))),
        )
    )


def _leaf_keys(image: ImageNode, study: StudyNode, ordinal: int) -> Dataset:
    """The keys of a non-IMAGE leaf record, from the stored header with the documented defaults."""
    header = image.header if image.header is not None else Dataset()
    source = Dataset()
    source.update(header)
    date, time = _study_date(study), _study_time(study)
    defaults = {
        "InstanceNumber": _integer(image.number, ordinal),
        "ContentDate": date,
        "ContentTime": time,
        "PresentationCreationDate": date,
        "PresentationCreationTime": time,
        "InstanceCreationDate": date,
        "ContentLabel": "UNLABELED",
        "StructureSetLabel": "UNLABELED",
        "RTPlanLabel": "UNLABELED",
        "CompletionFlag": "PARTIAL",
        "VerificationFlag": "UNVERIFIED",
        "MIMETypeOfEncapsulatedDocument": _ENCAPSULATED_MIME_TYPES.get(
            image.sop_class_uid, "application/octet-stream"
        ),
    }
    for keyword, value in defaults.items():
        if keyword not in source or source[keyword].VM == 0:
            setattr(source, keyword, value)
    return source


def _leaf_record(image: ImageNode, study: StudyNode, ordinal: int) -> bytes:
    kind = record_type(image.sop_class_uid)
    if kind == "IMAGE":
        return _image_record(image, ordinal)
    try:
        keys = DIRECTORY_RECORDERS[kind](_leaf_keys(image, study, ordinal))
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        log.warning("DICOMDIR: %s gets an IMAGE record (%s)", image.sop_uid, exc)
        return _image_record(image, ordinal)
    record = Dataset()
    for tag, vr, value in [*_record_header(kind), *_reference(image)]:
        record.add_new(tag, vr, value)
    record.update(keys)
    return _encode_dataset(record)


def _uses_non_ascii(record: Dataset) -> bool:
    for element in record.iterall():
        values = element.value if element.VM > 1 else [element.value]
        for value in values:
            if isinstance(value, str | bytes) or type(value).__name__ == "PersonName":
                if not str(value).isascii():
                    return True
    return False


def _encode_dataset(record: Dataset) -> bytes:
    if _uses_non_ascii(record):
        record.SpecificCharacterSet = "ISO_IR 192"
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_dataset(buffer, record)
    return buffer.getvalue()


# Every record starts with these three elements (tags sort first), explicit VR little endian:
# (0004,1400) UL next, (0004,1410) US in-use flag, (0004,1420) UL lower level.
_NEXT_AT, _LOWER_AT = 8, 30
_RECORD_START = bytes.fromhex("04000014554c0400")


@dataclass
class _Record:
    data: bytearray
    next_index: int | None = None
    lower_index: int | None = None


def _records(patients: list[PatientNode]) -> tuple[list[_Record], list[int]]:
    """All records, depth first, with sibling and child links as indexes; and the root indexes."""
    records: list[_Record] = []
    roots: list[int] = []

    def add(record: bytes, siblings: list[int]) -> _Record:
        item = _Record(bytearray(record))
        if item.data[:8] != _RECORD_START:
            raise RuntimeError("unexpected directory record layout")
        if siblings:
            records[siblings[-1]].next_index = len(records)
        siblings.append(len(records))
        records.append(item)
        return item

    def first_child(parent: _Record) -> None:
        if parent.lower_index is None:
            parent.lower_index = len(records)

    for p, patient in enumerate(patients, 1):
        patient_item = add(_patient_record(patient, p), roots)
        studies: list[int] = []
        for s, study in enumerate(patient.studies, 1):
            first_child(patient_item)
            study_item = add(_study_record(study, s), studies)
            series_list: list[int] = []
            for r, series in enumerate(study.series, 1):
                first_child(study_item)
                series_item = add(_series_record(series, r), series_list)
                leaves: list[int] = []
                for i, image in enumerate(series.images, 1):
                    first_child(series_item)
                    add(_leaf_record(image, study, i), leaves)
    return records, roots


def _content_uid(patients: list[PatientNode]) -> str:
    names = [
        f"{image.sop_uid}={'/'.join(image.file_id)}"
        for patient in patients
        for study in patient.studies
        for series in study.series
        for image in series.images
    ]
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(10).join(names)).int}"


def dicomdir_bytes(patients: list[PatientNode]) -> bytes:
    """The DICOMDIR file for these patients (file IDs assigned), byte-identical for equal input."""
    records, roots = _records(patients)
    identity = Dataset()
    identity.SOPClassUID = MediaStorageDirectoryStorage
    identity.SOPInstanceUID = _content_uid(patients)
    prefix = part10_prefix(identity, ExplicitVRLittleEndian)

    def top(first: int, last: int) -> bytes:
        return _encode_elements(
            [
                (0x00041130, "CS", FILE_SET_ID),
                (0x00041200, "UL", first),
                (0x00041202, "UL", last),
                (0x00041212, "US", 0),  # File-set consistency: no known inconsistencies.
            ]
        )

    # (0004,1220) SQ of undefined length, ended by a Sequence Delimitation Item (PS3.5 7.5.2).
    sequence_header = bytes.fromhex("04002012") + b"SQ\x00\x00" + b"\xff\xff\xff\xff"
    # Offsets count from the first byte of the file, preamble included (PS3.3 F.3.2.1). Fixed-size
    # UL values keep every length independent of the offsets written into them.
    position = len(prefix) + len(top(0, 0)) + len(sequence_header)
    offsets = []
    for record in records:
        offsets.append(position)
        position += 8 + len(record.data)
    for record in records:
        next_offset = offsets[record.next_index] if record.next_index is not None else 0
        lower_offset = offsets[record.lower_index] if record.lower_index is not None else 0
        struct.pack_into("<I", record.data, _NEXT_AT, next_offset)
        struct.pack_into("<I", record.data, _LOWER_AT, lower_offset)
    first = offsets[roots[0]] if roots else 0
    last = offsets[roots[-1]] if roots else 0
    parts = [prefix, top(first, last), sequence_header]
    for record in records:
        parts.append(b"\xfe\xff\x00\xe0" + struct.pack("<I", len(record.data)))
        parts.append(bytes(record.data))
    parts.append(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    return b"".join(parts)
