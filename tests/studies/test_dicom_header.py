"""dicom_header's own readers of the usual case against the pydicom functions they stand in for."""

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels.utils import get_expected_length

from studies import dicom_header
from tests.conftest import make_dataset, to_bytes

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _files() -> list[Path]:
    return sorted(p for p in TEST_FILES.rglob("*") if p.is_file())


def _meta_variants(data: bytes) -> dict[str, bytes]:
    """The file, the same dataset behind a meta group of our own, and damaged meta groups."""
    variants = {"as is": data}
    if data[128:132] != b"DICM":
        return variants
    fp = io.BytesIO(data)
    read_preamble(fp, False)
    try:
        meta = _read_file_meta_info(fp)
        prefix = dicom_header.part10_prefix_for(
            sop_class_uid=str(meta.MediaStorageSOPClassUID),
            sop_instance_uid=str(meta.MediaStorageSOPInstanceUID),
            transfer_syntax_uid=str(meta.TransferSyntaxUID),
        )
    except Exception:  # noqa: BLE001 - a file without valid UIDs has no receiver form.
        prefix = None
    end = fp.tell()
    if prefix is not None:
        variants["receiver"] = prefix + data[end:]
    for cut in (133, 140, 144, 150, end - 1, end, end + 1, end + 7):
        variants[f"cut at {cut}"] = data[:cut]
    length = int.from_bytes(data[140:144], "little")
    for delta in (-2, 2, 10**9):
        changed = ((length + delta) % 2**32).to_bytes(4, "little")
        variants[f"group length {delta:+}"] = data[:140] + changed + data[144:]
    for at in range(132, end, 5):
        variants[f"byte {at} flipped"] = data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]
    return variants


def _element_state(meta) -> list:
    return [(tag, repr(elem)) for tag, elem in meta.items()]


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_plain_meta_reads_what_pydicom_reads(path: Path) -> None:
    for name, data in _meta_variants(path.read_bytes()).items():
        ours_fp, theirs_fp = io.BytesIO(data), io.BytesIO(data)
        if read_preamble(ours_fp, force=True) is None:
            continue
        read_preamble(theirs_fp, force=True)
        ours = dicom_header._plain_meta(ours_fp)
        if name == "receiver":
            assert ours is not None, "the receiver's own meta group takes the plain path"
        if ours is None:
            continue
        try:
            theirs = _read_file_meta_info(theirs_fp)
        except Exception:  # noqa: BLE001
            pytest.fail(f"{name}: read as plain, but pydicom fails on it")
        # pydicom converts its first element on reading; the values and raw bytes are the same.
        first = theirs.get_item(0x00020000)
        if not isinstance(first, RawDataElement):
            theirs._dict[first.tag] = ours.get_item(0x00020000)
            assert theirs[0x00020000] == ours[0x00020000], name
        assert _element_state(ours) == _element_state(theirs), name
        assert ours.original_encoding == theirs.original_encoding, name
        assert ours.original_character_set == theirs.original_character_set, name
        assert ours_fp.tell() == theirs_fp.tell(), name


def test_a_damaged_meta_group_is_rejected_with_a_reason() -> None:
    data = (TEST_FILES / "CT_small.dcm").read_bytes()
    for name, variant in _meta_variants(data).items():
        try:
            parsed = dicom_header.read(io.BytesIO(variant))
        except dicom_header.InvalidDicom as exc:
            assert str(exc), name
        else:
            assert parsed.ds.SOPInstanceUID, name


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_expected_length_is_pydicoms(path: Path) -> None:
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        reference = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not a file pydicom reads.
        return
    try:
        expected = get_expected_length(reference)
    except (AttributeError, TypeError, ValueError, KeyError):
        expected = None
    assert dicom_header._expected_length(ds) == (expected if isinstance(expected, int) else None)


def test_expected_length_of_the_usual_image_is_worked_out_from_raw_values() -> None:
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm", stop_before_pixels=True)
    assert dicom_header._plain_expected_length(ds) == 128 * 128 * 2 == get_expected_length(ds)


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_metadata_json_is_what_pydicoms_dataset_access_gives(path: Path, monkeypatch) -> None:
    data = path.read_bytes()

    def metadata() -> str | None:
        try:
            return dicom_header.metadata_json(dicom_header.read(io.BytesIO(data)))
        except dicom_header.InvalidDicom:
            return None
        except Exception as exc:  # noqa: BLE001 - ingest rejects on this; it must be the same.
            return repr(exc)

    ours = metadata()
    # Again, with what the first time remembered.
    remembered = metadata()
    # Every element through Dataset.__getitem__, as before the plain path and the memo.
    monkeypatch.setattr(dicom_header, "_is_plain", lambda raw: False)
    assert ours == remembered == metadata()


@pytest.mark.parametrize(
    ("changes", "encoding"),
    [
        ({"BitsAllocated": 1, "Rows": 3, "Columns": 3}, (False, True)),
        ({"BitsAllocated": 1, "Rows": 4, "Columns": 2}, (True, True)),
        ({"BitsAllocated": 12}, (False, False)),
        ({"PhotometricInterpretation": "YBR_FULL_422", "SamplesPerPixel": 3}, (False, True)),
        ({"PhotometricInterpretation": " YBR_FULL_422"}, (True, True)),
        ({"PhotometricInterpretation": None}, (False, True)),
        ({"NumberOfFrames": "3"}, (False, True)),
        ({"Rows": [2, 3]}, (False, True)),
        ({"Columns": None}, (False, True)),
    ],
)
def test_expected_length_of_made_up_images_is_pydicoms(changes: dict, encoding: tuple) -> None:
    ds = pydicom.Dataset()
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.BitsAllocated = 5, 7, 16
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=encoding[0], little_endian=encoding[1])
    # Read back, so that the values are raw as read() leaves them.
    raw, reference = (pydicom.dcmread(io.BytesIO(buffer.getvalue()), force=True) for _ in range(2))
    try:
        expected = get_expected_length(reference)
    except (AttributeError, TypeError, ValueError, KeyError):
        expected = None
    assert dicom_header._expected_length(raw) == (expected if isinstance(expected, int) else None)


def _parsed(data: bytes) -> dicom_header.ParsedFile:
    return dicom_header.read(io.BytesIO(data))


def test_header_value_derives_a_repeated_value_once() -> None:
    calls = []

    def derive(value: object) -> str:
        calls.append(value)
        return str(value).lower()

    # Two instances of one patient, as a series repeats it.
    first, second = (
        _parsed(to_bytes(make_dataset(patient_name="MEMO^TWICE", InstanceNumber=n))) for n in (1, 2)
    )
    name, number = 0x00100010, 0x00200013
    assert dicom_header.header_value(first.ds, name, derive) == "memo^twice"
    assert dicom_header.header_value(second.ds, name, derive) == "memo^twice"
    assert len(calls) == 1
    # A value that differs is derived again; a missing one is None.
    assert dicom_header.header_value(first.ds, number, derive) == "1"
    assert dicom_header.header_value(second.ds, number, derive) == "2"
    assert dicom_header.header_value(first.ds, 0x00104000, derive) == "none"
    assert len(calls) == 4


def test_header_value_tells_character_sets_apart() -> None:
    # The same bytes (UTF-8 for "É") name different people under two character sets.
    names = {}
    for charset in ("ISO_IR 192", "ISO_IR 100"):
        ds = make_dataset()
        ds.SpecificCharacterSet = charset
        data = to_bytes(ds).replace(b"DOE^JOHN", "DOÉ^JON".encode())
        names[charset] = dicom_header.header_value(_parsed(data).ds, 0x00100010, str)
    assert names == {"ISO_IR 192": "DOÉ^JON", "ISO_IR 100": "DOÃ\x89^JON"}
