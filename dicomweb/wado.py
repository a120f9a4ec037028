"""WADO-RS and WADO-URI (PS3.18 10.4, 9): instances, metadata, frames and bulk data.

Instances are streamed from the stored files as they are; metadata is the JSON text stored at
ingest, joined without being parsed; frames are cut from the stored file at the offsets computed
at ingest and sent in their stored transfer syntax, labelled in each part's header. Only what
cannot be cut directly (deflated datasets, bit-packed frames, a client that insists on
uncompressed frames) goes through pydicom.
"""

import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.encaps import get_frame
from pydicom.pixels import apply_rescale, apply_voi_lut, pixel_array, unpack_bits
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomweb.multipart import MediaRange, encode_parts, part_header
from studies import storage
from studies.models import Instance

CHUNK = 256 * 1024
OCTET = "application/octet-stream"
DICOM = "application/dicom"
NATIVE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian}
DEFLATED = "1.2.840.10008.1.2.1.99"

# PS3.18 Table 8.7.3-2: the media type of a frame in each compressed transfer syntax.
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
    "1.2.840.10008.1.2.4.100": "video/mpeg",
    "1.2.840.10008.1.2.4.101": "video/mpeg",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
}


# What a frame request reads of an instance (metadata, a few KB, only loads when needed).
FRAME_FIELDS = ("path", "transfer_syntax_uid", "frames", "num_frames", "rows")


class NotAcceptable(Exception):
    """None of the Accept header's media ranges can be served; the message says what can."""


# ---------------------------------------------------------------------------------------------
# Instances


def dicom_ranges_acceptable(ranges: Sequence[MediaRange], transfer_syntaxes: set[str]) -> bool:
    """Whether instances stored in ``transfer_syntaxes`` can be sent as multipart Part-10.

    Stored files are never transcoded: a request for a specific transfer syntax is served when
    every instance is stored in it. No transfer-syntax parameter means "as stored", as Orthanc
    and dcm4chee do, so that plain clients get the files rather than an error.
    """
    if not ranges:
        return True
    for r in ranges:
        if r.type == "multipart/related":
            kind = r.param("type", DICOM).lower()
        elif r.type in ("*/*", "multipart/*", DICOM):
            kind = DICOM
        else:
            continue
        if kind not in (DICOM, "*/*", "application/*"):
            continue
        syntax = r.param("transfer-syntax", "*")
        if syntax == "*" or transfer_syntaxes <= {syntax}:
            return True
    return False


def wants_single_part(ranges: Sequence[MediaRange]) -> bool:
    """An instance asked for as plain ``application/dicom`` (what a browser link would do)."""
    return bool(ranges) and ranges[0].type == DICOM


def file_chunks(relative: str) -> Iterator[bytes]:
    with storage.open_file(relative) as fp:
        while chunk := fp.read(CHUNK):
            yield chunk


def instances_multipart(paths: Iterable[str], boundary: str) -> Iterator[bytes]:
    header = part_header(DICOM)
    return encode_parts(boundary, ((header, file_chunks(path)) for path in paths))


# ---------------------------------------------------------------------------------------------
# Metadata


def metadata_array(rows: Iterable[tuple[str, str, str, str]], instance_url) -> Iterator[str]:
    """Join stored metadata texts into one JSON array, with absolute BulkDataURIs.

    ``rows`` are (study, series, SOP instance UID, metadata); ``instance_url(study, series, sop)``
    gives the instance's absolute URL. The stored text names bulk data ``bulk/<tag>`` relative
    to its instance; in the compact JSON that text can only occur as that URI's start (inside a
    string value the quotes would be escaped), so a plain replacement is exact.
    """
    yield "["
    first = True
    for study_uid, series_uid, sop_uid, text in rows:
        base = json.dumps(instance_url(study_uid, series_uid, sop_uid) + "/bulk/")[1:-1]
        text = (text or "{}").replace('"BulkDataURI":"bulk/', f'"BulkDataURI":"{base}')
        yield text if first else "," + text
        first = False
    yield "]"


# ---------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True)
class FramePlan:
    """How to send an instance's frames: as stored (``native=False``) or decoded to native."""

    native: bool
    content_type: str  # The response's ``type`` parameter.


def frame_media_type(transfer_syntax: str) -> str:
    return FRAME_MEDIA_TYPES.get(transfer_syntax, OCTET)


def plan_frames(ranges: Sequence[MediaRange], transfer_syntax: str) -> FramePlan:
    """Pick the first acceptable way to send frames stored in ``transfer_syntax`` (PS3.18 8.7).

    ``transfer-syntax=*`` (what OHIF sends) is answered in the stored syntax; no transfer-syntax
    with ``application/octet-stream`` is the standard's default, Explicit VR Little Endian, so
    compressed frames are then decoded.
    """
    stored_type = frame_media_type(transfer_syntax)
    is_native = transfer_syntax in NATIVE or transfer_syntax == DEFLATED
    if not ranges:
        ranges = [MediaRange("multipart/related", {"type": OCTET})]
    for r in ranges:
        if r.type == "multipart/related":
            kind = r.param("type", OCTET).lower()
        elif r.type in ("*/*", "multipart/*"):
            kind, r = "*/*", MediaRange(r.type, {"transfer-syntax": "*"})
        else:
            continue
        syntax = r.param("transfer-syntax", "")
        kind_major = kind.split("/")[0]
        matches_stored = kind in ("*/*", stored_type, f"{stored_type.split('/')[0]}/*")
        if is_native:
            matches_stored = matches_stored or kind in (OCTET, "application/*")
        if syntax == "*" and (matches_stored or kind == OCTET):
            return FramePlan(native=is_native, content_type=stored_type)
        if syntax in ("", ExplicitVRLittleEndian) and (
            kind in (OCTET, "*/*") or kind_major == "application"
        ):
            return FramePlan(native=True, content_type=OCTET)
        if syntax in ("", transfer_syntax) and matches_stored and kind != OCTET:
            return FramePlan(native=is_native, content_type=stored_type)
    raise NotAcceptable(
        f"frames of this instance are stored as {transfer_syntax}; ask for "
        f'multipart/related; type="{OCTET}"; transfer-syntax=* (as stored) or '
        f"transfer-syntax={ExplicitVRLittleEndian} (uncompressed)"
    )


def frame_total(instance: Instance) -> int:
    """How many frames the instance has, from the ingest-time frame table or its metadata."""
    if instance.frames:
        return len(instance.frames)
    if instance.num_frames:
        return instance.num_frames
    metadata = json.loads(instance.metadata or "{}")
    # Ingest leaves a deflated dataset's pixel data unparsed: its Rows tell that it has some.
    if "7FE00010" not in metadata and not (
        instance.transfer_syntax_uid == DEFLATED and instance.rows
    ):
        return 0
    try:
        return int(metadata["00280008"]["Value"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return 1


def parse_frame_numbers(text: str) -> list[int]:
    """``1,3,5`` -> [1, 3, 5]; frame numbers are 1-based (PS3.18 10.4.1.1.7)."""
    numbers = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise ValueError(
                f"frame numbers are positive integers separated by commas, not {text!r}"
            )
        numbers.append(int(item))
    if not numbers or len(numbers) > 10000:
        raise ValueError("ask for between 1 and 10000 frames")
    return numbers


def _bits_allocated(instance: Instance) -> int:
    metadata = json.loads(instance.metadata or "{}")
    try:
        return int(metadata["00280100"]["Value"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return 16


def _swap_to_little(data: bytes, bits: int) -> bytes:
    # Big Endian native data is swapped per BitsAllocated word (PS3.5 A.3); OB/8-bit is unchanged.
    if bits == 16:
        return np.frombuffer(data, dtype=">u2").astype("<u2").tobytes()
    if bits == 32:
        return np.frombuffer(data, dtype=">u4").astype("<u4").tobytes()
    if bits == 64:
        return np.frombuffer(data, dtype=">u8").astype("<u8").tobytes()
    return data


def iter_frames(
    instance: Instance, numbers: list[int], plan: FramePlan
) -> Iterator[tuple[str, bytes]]:
    """(part content type, bytes) for each requested frame, one frame in memory at a time."""
    syntax = instance.transfer_syntax_uid
    compressed = syntax not in NATIVE and syntax != DEFLATED
    if plan.native and compressed:
        yield from _decoded_frames(instance, numbers)
        return
    label = ExplicitVRLittleEndian if not compressed else syntax
    media = OCTET if not compressed else frame_media_type(syntax)
    part_type = f"{media}; transfer-syntax={label}"
    if instance.frames and syntax != DEFLATED:
        bits = _bits_allocated(instance) if syntax == ExplicitVRBigEndian else 8
        with storage.open_file(instance.path) as fp:
            # One pread per fragment: no seek, and no pass through the file's buffer.
            fd = fp.fileno()
            for number in numbers:
                data = b"".join(
                    os.pread(fd, length, offset) for offset, length in instance.frames[number - 1]
                )
                yield part_type, _swap_to_little(data, bits) if bits != 8 else data
        return
    yield from ((part_type, data) for data in _frames_with_pydicom(instance, numbers))


def _frames_with_pydicom(instance: Instance, numbers: list[int]) -> Iterator[bytes]:
    """Frames that cannot be cut from the file directly: deflated or bit-packed pixel data."""
    with storage.open_file(instance.path) as fp:
        ds = dcmread(fp)
    count = int(ds.get("NumberOfFrames") or 1)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        for number in numbers:
            yield get_frame(ds.PixelData, number - 1, number_of_frames=count)
        return
    bits = int(ds.BitsAllocated)
    pixels_per_frame = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
    data = ds.PixelData
    if not ds.is_little_endian:
        data = _swap_to_little(data, bits)
    if bits == 1:
        # Bit-packed frames may start mid-byte (PS3.5 8.1.1); each is re-packed on its own.
        unpacked = unpack_bits(data, as_array=True)
        for number in numbers:
            start = (number - 1) * pixels_per_frame
            frame = unpacked[start : start + pixels_per_frame]
            yield np.packbits(frame, bitorder="little").tobytes()
        return
    size = pixels_per_frame * bits // 8
    for number in numbers:
        yield data[(number - 1) * size : number * size]


def _decoded_frames(instance: Instance, numbers: list[int]) -> Iterator[tuple[str, bytes]]:
    part_type = f"{OCTET}; transfer-syntax={ExplicitVRLittleEndian}"
    path = storage.absolute(instance.path)
    for number in numbers:
        array = pixel_array(path, index=number - 1)
        yield part_type, np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def frames_multipart(parts: Iterable[tuple[str, bytes]], boundary: str) -> Iterator[bytes]:
    return encode_parts(boundary, ((part_header(kind), (data,)) for kind, data in parts))


# ---------------------------------------------------------------------------------------------
# Bulk data


def bulk_value(instance: Instance, tag: int) -> bytes | None:
    """The value of a top-level bulk data element, little endian, or None if there is none."""
    with storage.open_file(instance.path) as fp:
        ds = dcmread(fp, defer_size=1024, stop_before_pixels=tag < 0x7FE00000)
        if tag not in ds:
            return None
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement):
            if raw.value is None:
                fp.seek(raw.value_tell)
                value = fp.read(raw.length)
            else:
                value = raw.value
        else:
            value = ds[tag].value
            if not isinstance(value, bytes):
                return None
    if not ds.is_little_endian and raw.VR in ("OW", "OF", "OL", "OD", "OV"):
        widths = {"OW": 16, "OF": 32, "OL": 32, "OD": 64, "OV": 64}
        value = _swap_to_little(value, widths[raw.VR])
    return value


def bulk_metadata_tags(instance: Instance) -> set[int]:
    metadata = json.loads(instance.metadata or "{}")
    return {int(key, 16) for key, element in metadata.items() if "BulkDataURI" in element}


# ---------------------------------------------------------------------------------------------
# WADO-URI rendered images


def render_jpeg(instance: Instance, frame_number: int) -> bytes:
    """A frame as an 8-bit JPEG: rescale, then the stored window or the full range."""
    with storage.open_file(instance.path) as fp:
        ds = dcmread(fp)
    array = pixel_array(ds, index=frame_number - 1)
    if int(ds.get("SamplesPerPixel", 1)) == 1:
        array = apply_rescale(array, ds)
        if "WindowCenter" in ds and "WindowWidth" in ds:
            array = apply_voi_lut(array, ds)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / ((high - low) or 1.0) * 255.0
        if ds.get("PhotometricInterpretation") == "MONOCHROME1":
            scaled = 255.0 - scaled
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    else:
        image = Image.fromarray(array.astype(np.uint8)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
