"""Reading a DICOM file's header without decoding pixel data, and what ingest derives from it.

Everything in a DICOM file is untrusted: callers get either a ``ParsedFile`` whose required UIDs
are valid, or ``InvalidDicom`` with a reason a person can act on.
"""

import functools
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from pydicom import dcmread
from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import parse_basic_offsets, parse_fragments
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.pixels.utils import get_expected_length
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pydicom.valuerep import AMBIGUOUS_VR

# pacsweb's own implementation identity in the file meta group (PS3.10 7.1). A fixed UUID-derived
# UID (PS3.5 B.2), so that the meta group, and thus the stored bytes, depend only on the dataset.
IMPLEMENTATION_CLASS_UID = "2.25.255768423702424178476155963519307003041"
IMPLEMENTATION_VERSION_NAME = "PACSWEB_1"

# Elements bigger than this are left on disk while the header is parsed, and served as bulk data.
DEFER_BYTES = 1024
PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
# A set: pydicom's tags compare through a slow __eq__, which a tuple's ``in`` calls per item.
_PIXEL_TAG_SET = frozenset(PIXEL_TAGS)

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_JPEG_EOI = b"\xff\xd9"

T = TypeVar("T")


class InvalidDicom(Exception):
    """The file is not a DICOM instance that can be archived; the message says why."""


@dataclass
class PixelData:
    """Where the pixel data element's value lies in the file that was read."""

    tag: int
    vr: str
    value_start: int
    length: int  # 0xFFFFFFFF for encapsulated (undefined length) pixel data.
    # What native pixel data must hold by the image attributes, when they say.
    expected_length: int | None = None


@dataclass
class ParsedFile:
    # The header up to (not including) the pixel data.
    ds: Dataset
    transfer_syntax_uid: str
    # Offset of the dataset (after the file meta group) in the file that was read.
    dataset_start: int
    file_size: int
    pixel_data: PixelData | None
    # Per frame, the [offset, length] pieces of the file that was read (see frame_offsets).
    frames: list[list[list[int]]] | None


def is_valid_uid(value: object) -> bool:
    """PS3.5 9.1: digits and dots, no empty or zero-padded components, at most 64 characters."""
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID.match(value))


def read(fp: BinaryIO) -> ParsedFile:
    """Parse the header of the DICOM file open in ``fp`` (seekable), leaving pixel data on disk."""
    fp.seek(0, 2)
    file_size = fp.tell()
    fp.seek(0)
    if file_size == 0:
        raise InvalidDicom("the file is empty")
    try:
        has_magic = read_preamble(fp, force=True) is not None
        meta = _plain_meta(fp) if has_magic else None
        if meta is None:
            fp.seek(132 if has_magic else 0)
            meta = _read_file_meta_info(fp)
        dataset_start = fp.tell()
        encoding = _plain_encoding(meta) if has_magic else None
        if encoding is None:
            # Anything unusual (no preamble or meta group, deflate, a private syntax): pydicom
            # reads the file from the start and works the encoding out.
            fp.seek(0)
            ds = dcmread(fp, force=True, defer_size=DEFER_BYTES, stop_before_pixels=True)
        else:
            # The usual file: its dataset is read once, from where the meta group ends, as
            # dcmread would (it would read the preamble and meta group again first).
            dataset = read_dataset(fp, *encoding, stop_when=_at_pixel_data, defer_size=DEFER_BYTES)
            # Bound to the file, as dcmread's result is, so that deferred values can be read.
            ds = FileDataset(
                fp,
                dataset,
                file_meta=meta,
                is_implicit_VR=encoding[0],
                is_little_endian=encoding[1],
            )
        # pydicom leaves the file at the pixel data element's tag when it stops before it.
        pixel_position = fp.tell()
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged files.
        raise InvalidDicom(f"not a readable DICOM file ({exc})") from exc
    if len(ds) == 0 or (not has_magic and not meta and "SOPClassUID" not in ds):
        raise InvalidDicom("not a DICOM file")
    _check_not_truncated(ds, file_size)
    for keyword in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
        try:
            value = ds.get(keyword)
        except Exception as exc:  # noqa: BLE001 - a damaged element fails on first access.
            raise InvalidDicom(f"{keyword} cannot be read ({exc})") from exc
        if value is None or value == "":
            raise InvalidDicom(f"{keyword} is missing")
        if not is_valid_uid(str(value)):
            raise InvalidDicom(f"{keyword} is not a valid UID: {str(value)[:80]!r}")
    transfer_syntax = _transfer_syntax(ds, meta)
    pixel_data = frames = None
    if transfer_syntax != DeflatedExplicitVRLittleEndian:
        pixel_data = _pixel_data_at(fp, pixel_position, file_size, ds)
    if pixel_data is not None:
        frames = _frames(fp, ds, pixel_data, file_size)
    return ParsedFile(ds, transfer_syntax, dataset_start, file_size, pixel_data, frames)


# VRs a file meta group uses (PS3.10 7.1), by the size of their length field (PS3.5 7.1.2).
_META_VRS_16 = frozenset((b"UL", b"UI", b"SH", b"AE"))
_META_VRS_32 = frozenset((b"OB", b"UR"))
_META_GROUP_LENGTH = b"\x02\x00\x00\x00UL\x04\x00"
# Far beyond any real meta group; a larger stated length is left to pydicom.
_MAX_META_BYTES = 0x10000


def _plain_meta(fp: BinaryIO) -> FileMetaDataset | None:
    """The file meta group at ``fp`` (after the magic) as ``_read_file_meta_info`` reads it.

    pydicom takes as long for these few elements as for the whole dataset. This reads the
    usual group only: one that starts with its group length, whose elements fill exactly that
    length with the VRs of PS3.10 7.1, followed by a dataset. For anything else (``None``)
    pydicom reads the group, with its own tolerance of damaged ones.
    """
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 12 or head[:8] != _META_GROUP_LENGTH:
        return None
    size = int.from_bytes(head[8:12], "little")
    if size > _MAX_META_BYTES:
        return None
    # Also the next element's tag, which pydicom reads to see where the group ends.
    body = fp.read(size + 8)
    if len(body) < size + 8 or int.from_bytes(body[size : size + 2], "little") == 2:
        return None
    elements = {
        BaseTag(0x00020000): RawDataElement(
            BaseTag(0x00020000), "UL", 4, head[8:12], start + 8, False, True
        )
    }
    position, last = 0, 0x00020000
    while position < size:
        header = body[position : position + 8]
        group, element = (
            int.from_bytes(header[0:2], "little"),
            int.from_bytes(header[2:4], "little"),
        )
        vr = header[4:6]
        if vr in _META_VRS_16:
            length, position = int.from_bytes(header[6:8], "little"), position + 8
        elif vr in _META_VRS_32:
            length = int.from_bytes(body[position + 8 : position + 12], "little")
            position += 12
        else:
            return None
        tag = group << 16 | element
        # Out of order or repeated elements, or a value past the group: left to pydicom.
        if group != 2 or tag <= last or position + length > size:
            return None
        vr_text = vr.decode("ascii")
        value = (
            body[position : position + length] if length else empty_value_for_VR(vr_text, raw=True)
        )
        elements[BaseTag(tag)] = RawDataElement(
            BaseTag(tag), vr_text, length, value, start + 12 + position, False, True
        )
        position += length
        last = tag
    if position != size:
        return None
    fp.seek(start + 12 + size)
    meta = FileMetaDataset(elements)
    meta.set_original_encoding(False, True, default_encoding)
    return meta


def _plain_encoding(meta: FileMetaDataset) -> tuple[bool, bool] | None:
    """(implicit VR, little endian) of a dataset that pydicom reads as it is stored, if known."""
    uid = meta.get("TransferSyntaxUID")
    return _encoding_of(str(uid)) if uid else None


@functools.lru_cache(maxsize=64)
def _encoding_of(uid: str) -> tuple[bool, bool] | None:
    # A handful of transfer syntaxes arrive: pydicom's UID properties are worked out once each.
    if uid == DeflatedExplicitVRLittleEndian or not is_valid_uid(uid):
        return None
    uid = UID(uid.strip("\x00 "))
    if not uid.is_transfer_syntax:
        return None
    return uid.is_implicit_VR, uid.is_little_endian


def _at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
    return tag in _PIXEL_TAG_SET


def _pixel_data_at(fp: BinaryIO, position: int, file_size: int, ds: Dataset) -> PixelData | None:
    """Read the pixel data element's header at ``position`` (PS3.5 7.1.2), if there is one."""
    fp.seek(position)
    header = fp.read(12)
    if len(header) < 8:
        return None
    implicit, little = ds.original_encoding
    order = "little" if little else "big"
    group, element = int.from_bytes(header[0:2], order), int.from_bytes(header[2:4], order)
    tag = (group << 16) | element
    if tag not in _PIXEL_TAG_SET:
        return None
    # Some writers encode implicit VR under an explicit transfer syntax (pydicom reads it with a
    # warning): an explicit VR is two upper-case letters.
    implicit = implicit or not (header[4:6].isalpha() and header[4:6].isupper())
    if implicit:
        vr, length, value_start = _dictionary_vr(tag), int.from_bytes(header[4:8], order), 8
    else:
        if len(header) < 12:
            raise InvalidDicom("the file is truncated (in the pixel data element)")
        vr, length, value_start = (
            header[4:6].decode("ascii", "replace"),
            int.from_bytes(header[8:12], order),
            12,
        )
    value_start += position
    expected = None
    if length != 0xFFFFFFFF:
        if value_start + length > file_size:
            raise InvalidDicom(
                "the file is truncated (the pixel data ends past the end of the file)"
            )
        expected = _expected_length(ds)
        # Native pixel data must hold every frame the image attributes announce.
        if tag == 0x7FE00010 and expected is not None and length < expected:
            raise InvalidDicom(
                f"the pixel data is truncated ({length} bytes where the image needs {expected})"
            )
    return PixelData(tag, vr, value_start, length, expected)


def _expected_length(ds: Dataset) -> int | None:
    """The bytes native pixel data must hold by the image attributes, if they say (PS3.5 8.1.1).

    What pydicom's ``get_expected_length`` returns, worked out from the raw values of the usual
    image: it would first convert each attribute, as long as the rest of reading the header.
    """
    expected = _plain_expected_length(ds)
    if expected is not None:
        return expected
    try:
        expected = get_expected_length(ds)
    except (AttributeError, TypeError, ValueError, KeyError):
        return None
    return expected if isinstance(expected, int) else None


# Rows, Columns, Samples per Pixel, Bits Allocated: one US value each.
_IMAGE_SIZE_TAGS = (0x00280010, 0x00280011, 0x00280002, 0x00280100)


def _plain_expected_length(ds: Dataset) -> int | None:
    """``get_expected_length`` for one-frame images with raw US values, else ``None``."""
    if 0x00280008 in ds:  # Number of Frames: its IS value has many forms.
        return None
    numbers = []
    for tag in _IMAGE_SIZE_TAGS:
        raw = ds.get_item(tag, keep_deferred=True) if tag in ds else None
        if (
            not isinstance(raw, RawDataElement)
            or raw.VR not in ("US", None)
            or not isinstance(raw.value, bytes)
            or len(raw.value) != 2
        ):
            return None
        numbers.append(int.from_bytes(raw.value, "little" if raw.is_little_endian else "big"))
    photometric = ds.get_item(0x00280004, keep_deferred=True) if 0x00280004 in ds else None
    # pydicom compares the decoded, stripped value with YBR_FULL_422: a plain value that does not
    # hold those letters cannot equal it. Without the attribute pydicom gives no length.
    if (
        not isinstance(photometric, RawDataElement)
        or photometric.VR not in ("CS", None)
        or not isinstance(photometric.value, bytes)
        or not photometric.value.isascii()
        or b"YBR_FULL_422" in photometric.value
    ):
        return None
    rows, columns, samples, bits = numbers
    length = rows * columns * samples
    if bits == 1:
        return length // 8 + (length % 8 > 0)
    return length * (bits // 8)


def _transfer_syntax(ds: Dataset, meta: FileMetaDataset) -> str:
    uid = str(meta.get("TransferSyntaxUID", "") or "").strip("\x00 ")
    if uid:
        if not is_valid_uid(uid):
            raise InvalidDicom(f"TransferSyntaxUID is not a valid UID: {uid[:80]!r}")
        return uid
    # No file meta group (a bare dataset): pydicom has already worked out its encoding.
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _check_not_truncated(ds: Dataset, file_size: int) -> None:
    # pydicom keeps a value cut short by the end of the file as it is, and skips deferred values
    # without reading them, so a truncated file would otherwise parse cleanly.
    for tag in ds.keys():
        # A deferred value stays on disk: its position and length say whether it is all there.
        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement) or raw.length == 0xFFFFFFFF:
            continue
        if raw.value is None:
            short = raw.value_tell + raw.length > file_size
        else:
            short = isinstance(raw.value, bytes) and len(raw.value) < raw.length
        if short:
            raise InvalidDicom(
                f"the file is truncated (element {tag} ends past the end of the file)"
            )


def part10_prefix(ds: Dataset, transfer_syntax_uid: str) -> bytes:
    """The zeroed preamble, ``DICM`` and a fresh file meta group for ``ds`` (PS3.10 7.1).

    A sender's preamble is never kept: it may hide an executable (PS3.10 7.5).
    """
    return part10_prefix_for(
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        transfer_syntax_uid=transfer_syntax_uid,
    )


def part10_prefix_for(
    *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str
) -> bytes:
    """``part10_prefix`` from the three UIDs, which must be valid (see ``is_valid_uid``).

    The group is encoded here rather than by pydicom, which takes longer than all the rest of
    receiving an instance's header; the bytes are the same (``tests/dimse/test_file_meta.py``).
    """
    elements = b"".join(
        (
            # (0002,0001) File Meta Information Version, OB: 00 01.
            b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01",
            _meta_element(0x0002, b"UI", _uid_bytes(sop_class_uid)),
            _meta_element(0x0003, b"UI", _uid_bytes(sop_instance_uid)),
            _meta_element(0x0010, b"UI", _uid_bytes(transfer_syntax_uid)),
            _META_IMPLEMENTATION,
        )
    )
    group_length = b"\x02\x00\x00\x00UL\x04\x00" + len(elements).to_bytes(4, "little")
    return _PREAMBLE_AND_MAGIC + group_length + elements


def _uid_bytes(uid: str) -> bytes:
    if not is_valid_uid(uid):
        raise ValueError(f"not a valid UID: {uid[:80]!r}")
    value = uid.encode("ascii")
    # PS3.5 9.1: a UID of odd length is padded with one NULL byte.
    return value + b"\x00" if len(value) % 2 else value


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    # Explicit VR little endian with a 2-byte length (PS3.5 7.1.2), as every file meta group is.
    return (
        b"\x02\x00" + element.to_bytes(2, "little") + vr + len(value).to_bytes(2, "little") + value
    )


def _implementation_name() -> bytes:
    name = IMPLEMENTATION_VERSION_NAME.encode("ascii")
    # PS3.5 6.2: an SH value of odd length is padded with one space.
    return name + b" " if len(name) % 2 else name


_PREAMBLE_AND_MAGIC = b"\x00" * 128 + b"DICM"
_META_IMPLEMENTATION = _meta_element(
    0x0012, b"UI", _uid_bytes(IMPLEMENTATION_CLASS_UID)
) + _meta_element(0x0013, b"SH", _implementation_name())


def _dictionary_vr(tag: int) -> str:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    # Ambiguous VRs such as "OB or OW" only arise for pixel data and overlays here.
    return "OW" if " or " in vr else vr


def metadata_json(parsed: ParsedFile) -> str:
    """The header as DICOM JSON (PS3.18 F.2), bulk values as relative ``bulk/<tag>`` URIs.

    WADO-RS serves this text as it is, so it is computed once, at ingest.
    """
    ds = parsed.ds
    # Values left on disk while parsing are read first, all of them: the JSON holds them, inline
    # or (binary ones over the threshold) as bulk data URIs. A failed read fails the whole.
    for tag, raw in list(ds.items()):
        if isinstance(raw, RawDataElement) and raw.value is None:
            ds[tag]  # Reads and converts it.
    bulk = {}
    if parsed.pixel_data is not None:
        bulk[parsed.pixel_data.tag] = parsed.pixel_data.vr
    # As Dataset.__getitem__ works it out, for each element.
    character_set = ds.original_character_set or ds._character_set  # noqa: SLF001
    charset_key = _charset_key(ds)
    members = {}
    for tag, raw in list(ds.items()):
        number = int(tag)
        # Group lengths (gggg,0000) are not part of the JSON model (PS3.18 F.2).
        if number in bulk or number & 0xFFFF == 0:
            continue
        if not (character_set and _is_plain(raw)):
            text = _attribute_json(ds[tag])
        else:
            key = _memo_key(raw, charset_key)
            text = _MEMO.get(("json", key), _UNKNOWN) if key else _UNKNOWN
            if text is _UNKNOWN:
                element = convert_raw_data_element(raw, encoding=character_set, ds=ds)
                text = _attribute_json(element)
                if key:
                    _MEMO.put(("json", key), text)
        if text is not None:
            members[f"{number:08X}"] = text
    for tag, vr in bulk.items():
        members[f"{tag:08X}"] = _compact_json({"vr": vr, "BulkDataURI": f"bulk/{tag:08X}"})
    # The members as json.dumps would join them, in tag order.
    return "{" + ",".join(f'"{key}":{members[key]}' for key in sorted(members)) + "}"


def _attribute_json(element: DataElement) -> str | None:
    """One attribute of the JSON model as text, or None for a value JSON cannot hold."""
    # A bulk data URI names a top-level element (``bulk/<tag>``): one inside a sequence (an
    # icon's pixel data) could not be told from it, so values in sequences stay inline.
    threshold = sys.maxsize if element.VR == "SQ" else DEFER_BYTES
    # Element by element rather than with Dataset.to_json_dict, whose suppress_invalid_tags
    # switches pydicom's process-wide validation mode, under other threads' reads too.
    try:
        attribute = element.to_json_dict(
            bulk_data_element_handler=_bulk_uri, bulk_data_threshold=threshold
        )
    except Exception:  # noqa: BLE001 - a value JSON cannot hold is left out.
        return None
    _to_json_model({"": attribute})
    return _compact_json(attribute)


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _is_plain(raw: object) -> bool:
    """Whether ``raw`` is an element whose value needs nothing of its dataset to convert.

    ``Dataset.__getitem__`` costs more than converting the value: it looks the character set up
    again and stores the element, and only sequences, ambiguous VRs (US or SS), private tags
    (their creator), UN (pydicom looks its VR up) and the character set itself need more than
    ``convert_raw_data_element``. The element is not stored back: nothing reads the dataset
    after its JSON.
    """
    if not isinstance(raw, RawDataElement):
        return False
    tag = int(raw.tag)
    if tag == 0x00080005 or tag >> 16 & 1 or (raw.value is None and raw.length != 0):
        return False
    vr = raw.VR
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return False
    return vr not in _NOT_PLAIN_VRS


_NOT_PLAIN_VRS = frozenset((*AMBIGUOUS_VR, "SQ", "UN"))


class _Memo:
    """What was made of element values, by their encoded form: bounded, emptied when full.

    The instances of a series repeat most of their header (patient, study, equipment), and
    converting a value with pydicom costs a hundred times as much as looking it up. Only what
    a value alone decides is kept (see ``_memo_key``), so a remembered result is the one the
    conversion would give. Threads share it: a dict's get and set are atomic.
    """

    SIZE = 8192

    def __init__(self) -> None:
        self._known: dict = {}

    def get(self, key: tuple, default: object) -> object:
        return self._known.get(key, default)

    def put(self, key: tuple, value: object) -> None:
        if len(self._known) >= self.SIZE:
            self._known.clear()
        self._known[key] = value


_MEMO = _Memo()
_UNKNOWN = object()
# Longer values (a list of positions, a description) are rarely repeated and would fill memory.
MEMO_LARGEST_VALUE = 128


def _charset_key(ds: Dataset) -> object:
    """The dataset's Specific Character Set as encoded: with the VR, all a text value needs."""
    item = ds.get_item(0x00080005, keep_deferred=True)
    if item is None:
        return None
    if isinstance(item, RawDataElement):
        return item.value
    value = item.value
    return value if isinstance(value, str | None) else tuple(value)


def _memo_key(raw: RawDataElement, charset_key: object) -> tuple | None:
    value = raw.value
    if value is None or len(value) > MEMO_LARGEST_VALUE:
        return None
    return (int(raw.tag), raw.VR, raw.is_little_endian, charset_key, bytes(value))


def header_value(ds: Dataset, tag: int, derive: Callable[[object], T]) -> T:
    """``derive(value of tag in ds, or None)``, remembered for the next instance with that value.

    ``derive`` must depend on nothing but the value it is given.
    """
    raw = ds.get_item(tag, keep_deferred=True)
    key = _memo_key(raw, _charset_key(ds)) if _is_plain(raw) else None
    if key is None:
        return derive(_value(ds, tag))
    memo_key = (derive, key)
    result = _MEMO.get(memo_key, _UNKNOWN)
    if result is _UNKNOWN:
        result = derive(_value(ds, tag))
        _MEMO.put(memo_key, result)
    return result


def _value(ds: Dataset, tag: int) -> object:
    element = ds.get(tag)
    return None if element is None else element.value


def _bulk_uri(element: object) -> str:
    return f"bulk/{int(element.tag):08X}"


def _to_json_model(data: dict) -> None:
    """Bring pydicom's JSON in line with PS3.18 F.2, in place, at every nesting level.

    An empty attribute keeps only its ``vr`` (pydicom writes ``"Value": []`` for an empty
    sequence), and group lengths inside sequence items are dropped as at the top level.
    """
    for key in [k for k in data if k.endswith("0000")]:
        del data[key]
    for attribute in data.values():
        value = attribute.get("Value")
        if value == []:
            del attribute["Value"]
        elif attribute.get("vr") == "SQ" and value:
            for item in value:
                _to_json_model(item)


def frame_offsets(parsed: ParsedFile, stored_dataset_start: int) -> list[list[list[int]]] | None:
    """Where each frame lies in the stored file: per frame, a list of [offset, length] pieces.

    The stored file differs from the one read only before the dataset (preamble and meta group).
    """
    if parsed.frames is None:
        return None
    shift = stored_dataset_start - parsed.dataset_start
    return [[[offset + shift, length] for offset, length in frame] for frame in parsed.frames]


def _frames(fp: BinaryIO, ds: Dataset, pixel: PixelData, file_size: int) -> list | None:
    if pixel.tag != 0x7FE00010:
        return None
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        return None
    if frames < 1:
        return None
    if pixel.length != 0xFFFFFFFF:
        return _native_frames(ds, frames, pixel)
    fp.seek(pixel.value_start)
    # Encapsulated data is bounded by the file, which the caller has already bounded.
    return _encapsulated_frames(
        ds, frames, pixel.value_start, fp.read(file_size - pixel.value_start)
    )


def _native_frames(ds: Dataset, frames: int, pixel: PixelData) -> list | None:
    total = pixel.expected_length
    try:
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError, KeyError):
        return None
    # Bit-packed frames (BitsAllocated 1) need not start on a byte boundary (PS3.5 8.1.1).
    if total is None or bits % 8 or total == 0 or total % frames or total > pixel.length:
        return None
    frame_bytes = total // frames
    return [[[pixel.value_start + i * frame_bytes, frame_bytes]] for i in range(frames)]


def _encapsulated_frames(ds: Dataset, frames: int, start: int, value: bytes) -> list | None:
    """Map fragments to frames as PS3.5 A.4 allows: offset tables, 1 frame, 1:1, or JPEG EOI."""
    try:
        buffer = DicomBytesIO(value)
        basic = parse_basic_offsets(buffer)
        first_fragment = buffer.tell()
        count, positions = parse_fragments(value[first_fragment:])
    except Exception:  # noqa: BLE001 - a damaged item structure means no direct frame access.
        return None
    if count == 0:
        return None
    pieces = []
    for pos in positions:
        at = first_fragment + pos
        length = int.from_bytes(value[at + 4 : at + 8], "little")
        pieces.append((pos, start + at + 8, length))
    extended = ds.get("ExtendedOffsetTable")
    if extended:
        table = [int.from_bytes(extended[i : i + 8], "little") for i in range(0, len(extended), 8)]
    else:
        table = basic
    if table and len(table) == frames:
        bounds = [*table, float("inf")]
        return [
            [[o, n] for pos, o, n in pieces if bounds[i] <= pos < bounds[i + 1]]
            for i in range(frames)
        ]
    if frames == 1:
        return [[[o, n] for _, o, n in pieces]]
    if count == frames:
        return [[[o, n]] for _, o, n in pieces]
    # Several fragments per frame and no table: a JPEG-family frame ends at its EOI marker.
    result, current = [], []
    for pos, offset, length in pieces:
        current.append([offset, length])
        end = value[first_fragment + pos + 8 + length - 2 : first_fragment + pos + 8 + length]
        tail = value[first_fragment + pos + 8 + length - 3 : first_fragment + pos + 8 + length - 1]
        if _JPEG_EOI in (end, tail):
            result.append(current)
            current = []
    return result if len(result) == frames and not current else None
