"""What replaces pynetdicom's slow or copying spots gives what pynetdicom would."""

import io
import random

import pytest
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE

from dimse.handlers import _Concatenation
from dimse.tuning import c_store_response


def response(status: int, comment: str | None, sop_instance_uid: str) -> C_STORE:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    rsp.AffectedSOPInstanceUID = sop_instance_uid
    rsp.Status = status
    rsp.ErrorComment = comment
    return rsp


def pynetdicom_encoding(rsp: C_STORE) -> bytes:
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    (pdata,) = message.encode_msg(1, 16384)
    ((context_id, data),) = pdata.presentation_data_value_list
    assert (context_id, data[:1]) == (1, b"\x03")
    return data[1:]


@pytest.mark.parametrize(
    ("status", "comment", "sop_instance_uid"),
    [
        (0x0000, None, "1.2.3.4"),
        (0x0000, None, "1.2.3.45"),
        (0xC000, "StudyInstanceUID is missing", "1.2.3"),
        (0xA700, "the archive's disk is full", "1.2.34"),
    ],
)
def test_c_store_response_is_encoded_as_pynetdicom_does(status, comment, sop_instance_uid):
    rsp = response(status, comment, sop_instance_uid)
    assert c_store_response(rsp) == pynetdicom_encoding(rsp)


def test_unusual_response_is_left_to_pynetdicom():
    rsp = response(0xC000, "bad", "1.2.3")
    rsp.OffendingElement = [0x00100010]
    assert c_store_response(rsp) is None


def test_received_dataset_is_read_as_one_file_with_its_meta_group():
    head, tail = bytes(range(7)) * 3, bytes(range(256)) * 40
    whole = head + tail
    ours = _Concatenation(head, memoryview(tail))
    expected = io.BytesIO(whole)
    rng = random.Random(7)
    for _ in range(500):
        if rng.random() < 0.3:
            offset, whence = rng.choice(
                [
                    (rng.randrange(len(whole) + 10), 0),
                    (rng.randrange(-5, 50), 1),
                    (-rng.randrange(30), 2),
                ]
            )
            if whence == 1 and expected.tell() + offset < 0:
                continue
            assert ours.seek(offset, whence) == expected.seek(offset, whence)
        size = rng.choice([1, 4, 8, 63, 64, 65, 1000, -1])
        assert ours.read(size) == expected.read(size)
        assert ours.tell() == expected.tell()
    # The tail is lent without a copy; what starts in the head is not.
    assert ours.view_from(len(head) + 5) == tail[5:]
    assert ours.view_from(len(head) - 1) is None
