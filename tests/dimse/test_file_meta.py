"""The file meta group that ingest writes (and the receiver puts before a received dataset)."""

import io

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import dcmread
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from studies.dicom_header import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    part10_prefix_for,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def pydicom_prefix(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = transfer_syntax_uid
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return b"\x00" * 128 + b"DICM" + buffer.getvalue()


@pytest.mark.parametrize(
    ("sop_instance_uid", "transfer_syntax_uid"),
    [
        ("1.2.3", ImplicitVRLittleEndian),  # odd lengths: padded with a NULL byte
        ("1.2.34", ExplicitVRLittleEndian),
        ("1." + "2" * 62, JPEG2000),  # the longest UID
    ],
)
def test_prefix_is_what_pydicom_writes(sop_instance_uid: str, transfer_syntax_uid: str) -> None:
    ours = part10_prefix_for(
        sop_class_uid=CT_IMAGE_STORAGE,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax_uid=transfer_syntax_uid,
    )
    assert ours == pydicom_prefix(CT_IMAGE_STORAGE, sop_instance_uid, transfer_syntax_uid)
    meta = dcmread(io.BytesIO(ours + b"\x08\x00\x16\x00"), force=True).file_meta
    assert meta.MediaStorageSOPInstanceUID == sop_instance_uid
    assert meta.TransferSyntaxUID == transfer_syntax_uid


@pytest.mark.parametrize("uid", ["", "1.2.03", "1.2." + "3" * 70, "1.2.x"])
def test_prefix_refuses_an_invalid_uid(uid: str) -> None:
    with pytest.raises(ValueError, match="not a valid UID"):
        part10_prefix_for(
            sop_class_uid=CT_IMAGE_STORAGE,
            sop_instance_uid=uid,
            transfer_syntax_uid=ExplicitVRLittleEndian,
        )
