"""Fixtures shared by every test module: isolated storage and DICOM files made with pydicom."""

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path: Path) -> None:
    settings.STORAGE_DIR = tmp_path / "storage"
    settings.CACHE_DIR = tmp_path / "cache"
    settings.PRIVATE_DIR = tmp_path / "private"


def make_dataset(
    *,
    patient_name: str = "DOE^JOHN",
    patient_id: str = "PAT001",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    modality: str = "CT",
    study_date: datetime.date | str = "20240115",
    rows: int = 8,
    columns: int = 8,
    frames: int = 1,
    **attributes: object,
) -> Dataset:
    """A small but complete image instance (16-bit MONOCHROME2) with real pixel data."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "M"
    ds.StudyDate = study_date if isinstance(study_date, str) else study_date.strftime("%Y%m%d")
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.AccessionNumber = "ACC001"
    ds.StudyDescription = "CT HEAD"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.InstitutionName = "General Hospital"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = "AXIAL"
    ds.InstanceNumber = 1
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = bytes(range(256)) * (rows * columns * 2 * frames // 256 + 1)
    ds.PixelData = ds.PixelData[: rows * columns * 2 * frames]
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def to_bytes(ds: Dataset) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def dicom_bytes() -> Callable[..., bytes]:
    """Make a Part-10 file's bytes: ``dicom_bytes(patient_name="MÜLLER^ANNA", ...)``."""
    return lambda **kwargs: to_bytes(make_dataset(**kwargs))


@pytest.fixture(scope="module")
def _receiver_of_this_module(django_db_setup, django_db_blocker, tmp_path_factory):
    from tests.dimse.receiver import receiver_process

    with receiver_process(tmp_path_factory.mktemp("receiver"), "--processes", "2") as running:
        yield running


@pytest.fixture
def receiver_subprocess(_receiver_of_this_module):
    """``manage.py dicom_receiver`` with two worker processes, started once per test module.

    This test's storage is the receiver's, so ``studies.storage`` sees the files it wrote.
    """
    from tests.dimse.receiver import use_storage_of

    use_storage_of(_receiver_of_this_module)
    return _receiver_of_this_module
