"""The receiver's C-ECHO and C-STORE, served on a thread of the test process, pynetdicom as SCU."""

import errno
import io
import logging
import socket
import time
from pathlib import Path

import pydicom
import pytest
from django.db import OperationalError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLossless, generate_uid
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import Verification

from studies import dicom_header, services, storage
from studies.models import Instance, Patient, Series, Study
from tests.conftest import make_dataset, to_bytes
from tests.dimse.receiver import (
    CT_IMAGE_STORAGE,
    associate,
    in_process_scp,
    sending_files_as_they_are,
)

pytestmark = pytest.mark.django_db(transaction=True)

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
# One bundled file per transfer syntax the receiver must store as received.
TRANSFER_SYNTAX_FILES = [
    "CT_small.dcm",  # explicit VR little endian
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",  # deflated explicit VR little endian
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline
    "JPEG-lossy.dcm",  # JPEG extended (12 bit)
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless, first-order prediction (14 SV1)
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEG-LS near-lossless",
    "MR_small_jp2klossless.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
]
SUCCESS = 0x0000


@pytest.fixture
def scp_port():
    with in_process_scp() as port:
        yield port


def storage_files() -> set[str]:
    return set(storage.iter_files())


def indexed_paths() -> set[str]:
    return set(Instance.objects.values_list("path", flat=True))


def dataset_bytes(path: Path) -> tuple[str, bytes]:
    """A file's transfer syntax and its dataset's bytes (after the file meta group)."""
    with open(path, "rb") as fp:
        parsed = dicom_header.read(fp)
    return parsed.transfer_syntax_uid, path.read_bytes()[parsed.dataset_start :]


def sample_file(name: str, tmp_path: Path) -> Path:
    """A bundled file, or one made from one for a transfer syntax that pydicom has no file of."""
    if name == "JPEG lossless":
        # Selection value 1 data (SV1) is valid process 14 data.
        ds = pydicom.dcmread(TEST_FILES / "SC_rgb_jpeg_gdcm.dcm")
        ds.file_meta.TransferSyntaxUID = JPEGLossless
    elif name == "JPEG-LS near-lossless":
        # pydicom's near-lossless files lack the study and series UIDs an archive needs.
        ds = pydicom.dcmread(TEST_FILES / "JPEGLSNearLossless_16.dcm")
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    else:
        return TEST_FILES / name
    path = tmp_path / "derived.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_echo_succeeds(scp_port: int) -> None:
    assoc = associate(scp_port, (Verification, [ImplicitVRLittleEndian]))
    try:
        assert assoc.send_c_echo().Status == SUCCESS
    finally:
        assoc.release()


@pytest.mark.parametrize("name", [*TRANSFER_SYNTAX_FILES, "JPEG lossless"])
def test_every_transfer_syntax_is_stored_as_sent(scp_port: int, name: str, tmp_path) -> None:
    path = sample_file(name, tmp_path)
    transfer_syntax, sent = dataset_bytes(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assoc = associate(scp_port, (ds.SOPClassUID, [transfer_syntax]))
    try:
        with sending_files_as_they_are():
            assert assoc.send_c_store(path).Status == SUCCESS
    finally:
        assoc.release()
    instance = Instance.objects.select_related("series__study").get()
    assert instance.sop_uid == ds.SOPInstanceUID
    assert instance.series.study.study_uid == ds.StudyInstanceUID
    assert instance.transfer_syntax_uid == transfer_syntax
    assert instance.source == Instance.Source.RECEIVER
    assert instance.source_detail == "TESTSCU"
    stored = storage.absolute(instance.path).read_bytes()
    prefix = dicom_header.part10_prefix(ds, transfer_syntax)
    # Everything but the file meta group is byte for byte what went over the network.
    assert stored == prefix + sent
    assert storage_files() == {instance.path}


def test_association_is_logged_with_its_counts(scp_port: int, caplog) -> None:
    caplog.set_level(logging.INFO, logger="dimse.handlers")
    ds = make_dataset()
    assoc = associate(scp_port, (CT_IMAGE_STORAGE, [ExplicitVRLittleEndian]))
    try:
        assert assoc.send_c_store(ds).Status == SUCCESS
        assert assoc.send_c_store(ds).Status == SUCCESS
    finally:
        assoc.release()
    port = assoc.acceptor.port

    # The receiver's thread logs the release after answering it: wait for the line.
    deadline = time.monotonic() + 10
    while True:
        lines = [r.getMessage() for r in caplog.records if r.name == "dimse.handlers"]
        found = any(
            line.startswith("association from TESTSCU at 127.0.0.1:")
            and line.endswith("released: 1 stored, 1 duplicates, 0 failed")
            for line in lines
        )
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert found, (port, lines)


def test_rejected_dataset_gets_a_failure_with_the_reason_and_the_association_goes_on(
    scp_port: int,
) -> None:
    broken = make_dataset(study_uid="1.2.3.04")
    good = make_dataset()
    assoc = associate(scp_port, (CT_IMAGE_STORAGE, [ExplicitVRLittleEndian]))
    try:
        rejected = assoc.send_c_store(broken)
        stored = assoc.send_c_store(good)
    finally:
        assoc.release()
    assert rejected.Status == 0xC000
    assert rejected.ErrorComment == "StudyInstanceUID is not a valid UID: '1.2.3.04'"
    assert stored.Status == SUCCESS
    assert list(Instance.objects.values_list("sop_uid", flat=True)) == [good.SOPInstanceUID]


def test_duplicate_is_success_and_other_content_under_the_same_uid_a_warning(
    scp_port: int,
) -> None:
    first = make_dataset(sop_uid="1.2.826.0.1.3680043.2.1.1", StudyDescription="FIRST")
    other = make_dataset(
        sop_uid="1.2.826.0.1.3680043.2.1.1",
        study_uid=first.StudyInstanceUID,
        series_uid=first.SeriesInstanceUID,
        StudyDescription="SECOND",
    )
    assoc = associate(scp_port, (CT_IMAGE_STORAGE, [ExplicitVRLittleEndian]))
    try:
        statuses = [assoc.send_c_store(ds) for ds in (first, first, other)]
    finally:
        assoc.release()
    assert [s.Status for s in statuses] == [SUCCESS, SUCCESS, 0xB000]
    assert statuses[2].ErrorComment == "kept the earlier, different instance with this UID"
    study = Study.objects.get()
    assert (study.description, study.num_instances) == ("FIRST", 1)
    assert len(storage_files()) == 1


def test_full_disk_answers_out_of_resources_and_stores_nothing(scp_port: int, monkeypatch) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    ds = make_dataset(rows=128, columns=128)
    assoc = associate(scp_port, (CT_IMAGE_STORAGE, [ExplicitVRLittleEndian]))
    try:
        with monkeypatch.context() as patch:
            # The disk fills up while the file is being made durable.
            patch.setattr(storage.os, "fsync", disk_full)
            refused = assoc.send_c_store(ds)
            assert storage_files() == set()
            assert not Instance.objects.exists() and not Study.objects.exists()
        # Space is back: the same association goes on, and the instance is stored.
        stored = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert refused.Status == 0xA700
    assert refused.ErrorComment == "the archive's disk is full"
    assert stored.Status == SUCCESS
    assert storage_files() == indexed_paths() and len(indexed_paths()) == 1


def test_database_failure_answers_a_processing_failure_and_keeps_no_file(
    scp_port: int, monkeypatch
) -> None:
    def database_down(*args: object) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "_index_rows", database_down)
    assoc = associate(scp_port, (CT_IMAGE_STORAGE, [ExplicitVRLittleEndian]))
    try:
        response = assoc.send_c_store(make_dataset())
    finally:
        assoc.release()
    assert response.Status == 0xC001
    assert response.ErrorComment == "could not index the instance"
    assert storage_files() == set()


def partial_c_store_pdus(assoc, ds: pydicom.Dataset, message_id: int) -> list[bytes]:
    """The P-DATA-TF PDUs of a C-STORE request, as a sender puts them on the wire."""
    context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == CT_IMAGE_STORAGE)
    encoded = to_bytes(ds)
    with io.BytesIO(encoded) as fp:
        start = dicom_header.read(fp).dataset_start
    request = C_STORE()
    request.MessageID = message_id
    request.AffectedSOPClassUID = ds.SOPClassUID
    request.AffectedSOPInstanceUID = ds.SOPInstanceUID
    request.Priority = 2
    request.DataSet = io.BytesIO(encoded[start:])
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    pdus = []
    for primitive in message.encode_msg(context.context_id, 16384):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        pdus.append(pdu.encode())
    return pdus


def test_aborted_association_keeps_what_was_acknowledged_and_leaves_no_temp_file(
    scp_port: int,
) -> None:
    study, series = "1.2.826.0.1.3680043.2.2", "1.2.826.0.1.3680043.2.2.1"
    instances = [
        make_dataset(study_uid=study, series_uid=series, InstanceNumber=n, rows=128, columns=128)
        for n in range(4)
    ]
    assoc = associate(scp_port, (CT_IMAGE_STORAGE, [ExplicitVRLittleEndian]))
    for ds in instances[:3]:
        assert assoc.send_c_store(ds).Status == SUCCESS
    # The fourth instance is cut off: its command and first fragments go out, then an abort.
    pdus = partial_c_store_pdus(assoc, instances[3], message_id=4)
    assert len(pdus) > 3
    for pdu in pdus[:3]:
        assoc.dul.socket.send(pdu)
    assoc.abort()
    assert set(Instance.objects.values_list("sop_uid", flat=True)) == {
        ds.SOPInstanceUID for ds in instances[:3]
    }
    assert Series.objects.get().num_instances == 3
    assert (Patient.objects.count(), Study.objects.get().num_instances) == (1, 3)
    assert storage_files() == indexed_paths()
    # The receiver goes on serving.
    again = associate(scp_port, (Verification, [ImplicitVRLittleEndian]))
    try:
        assert again.send_c_echo().Status == SUCCESS
    finally:
        again.release()


def test_a_pdu_longer_than_the_limit_drops_the_connection_before_it_is_read(caplog) -> None:
    with in_process_scp() as port, socket.create_connection(("127.0.0.1", port)) as sock:
        # An A-ASSOCIATE-RQ PDU header announcing 3 GB, then nothing: a receiver that believed
        # it would allocate or wait for 3 GB.
        sock.sendall(b"\x01\x00" + (3 * 1024**3).to_bytes(4, "big"))
        sock.settimeout(10)
        # The receiver closes the connection at once.
        assert sock.recv(1024) == b""
    assert any("announces a PDU of 3221225472 bytes" in r.getMessage() for r in caplog.records)


def test_associations_beyond_the_limit_are_rejected_until_one_ends() -> None:
    with in_process_scp(max_associations=2) as port:
        first = associate(port, (Verification, [ImplicitVRLittleEndian]))
        second = associate(port, (Verification, [ImplicitVRLittleEndian]))
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(Verification, ImplicitVRLittleEndian)
        third = ae.associate("127.0.0.1", port, ae_title="PACSWEB")
        assert third.is_rejected
        first.release()
        # The first association's thread ends just after its release is answered.
        deadline = time.monotonic() + 10
        fourth = ae.associate("127.0.0.1", port, ae_title="PACSWEB")
        while fourth.is_rejected and time.monotonic() < deadline:
            fourth = ae.associate("127.0.0.1", port, ae_title="PACSWEB")
        assert fourth.is_established
        assert fourth.send_c_echo().Status == SUCCESS
        fourth.release()
        second.release()
