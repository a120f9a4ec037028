"""STOW-RS (PS3.18 10.5): each part of a multipart/related body through ``instance_ingest``.

Parts are spooled to temporary files as they arrive, so memory stays flat whatever the upload.
The response lists what was stored (ReferencedSOPSequence) and what was not, with a reason
(FailedSOPSequence), in DICOM JSON.
"""

from dataclasses import dataclass, field
from typing import BinaryIO

from pydicom import dcmread

from dicomweb.multipart import ReceivedPart, iter_parts
from studies.models import Instance
from studies.services import DUPLICATE_SAME_CONTENT, IngestOutcome, Status, instance_ingest

# PS3.18 Table 10.5.3-2 and PS3.4 Annex B failure reasons.
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900  # Also used for an instance of another study than the one in the URL.
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
DUPLICATE_DIFFERENT = 0x0111
UNSUPPORTED_MEDIA_TYPE = 0xC122


@dataclass
class StowResult:
    stored: list[tuple[str, str, str]] = field(default_factory=list)  # (class, instance, study)
    failed: list[tuple[str, str, int, str]] = field(default_factory=list)  # + reason, text

    @property
    def http_status(self) -> int:
        # PS3.18 10.5.3: 200 all stored, 202 some failed, 409 none stored.
        if not self.failed:
            return 200
        return 202 if self.stored else 409


def _uids(fp: BinaryIO) -> tuple[str, str]:
    """SOP Class and Instance UIDs of a part, for the failure list; empty when unreadable."""
    try:
        fp.seek(0)
        ds = dcmread(
            fp, force=True, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"]
        )
        return str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))
    except Exception:  # noqa: BLE001 - the part is untrusted; its UIDs are only for the report.
        return "", ""


def _failure(outcome: IngestOutcome) -> int:
    if outcome.out_of_space:
        return OUT_OF_RESOURCES
    if outcome.status == Status.REJECTED:
        return CANNOT_UNDERSTAND
    if outcome.status == Status.DUPLICATE:
        return DUPLICATE_DIFFERENT
    return PROCESSING_FAILURE


def store_part(
    part: ReceivedPart, *, username: str, study_uid: str | None, result: StowResult
) -> None:
    kind = part.content_type.type
    if kind not in ("application/dicom", ""):
        class_uid, sop_uid = _uids(part.file)
        result.failed.append(
            (class_uid, sop_uid, UNSUPPORTED_MEDIA_TYPE, f"parts of type {kind} are not supported")
        )
        return
    class_uid, sop_uid = _uids(part.file)
    if study_uid is not None:
        part.file.seek(0)
        try:
            found = str(
                dcmread(
                    part.file,
                    force=True,
                    stop_before_pixels=True,
                    specific_tags=["StudyInstanceUID"],
                ).get("StudyInstanceUID", "")
            )
        except Exception:  # noqa: BLE001 - unreadable parts are reported by ingest below.
            found = study_uid
        if found != study_uid:
            result.failed.append(
                (class_uid, sop_uid, DOES_NOT_MATCH, "the instance belongs to another study")
            )
            return
    part.file.seek(0)
    outcome = instance_ingest(file=part.file, source=Instance.Source.STOW, source_detail=username)
    # An identical copy already archived counts as stored: the client's data is in the archive.
    if outcome.status == Status.STORED or (
        outcome.status == Status.DUPLICATE and outcome.reason == DUPLICATE_SAME_CONTENT
    ):
        result.stored.append((class_uid, outcome.sop_uid, outcome.study_uid))
    else:
        result.failed.append(
            (class_uid, outcome.sop_uid or sop_uid, _failure(outcome), outcome.reason)
        )


def store_body(
    stream: BinaryIO,
    boundary: str,
    *,
    username: str,
    study_uid: str | None,
    max_bytes: int,
    temp_dir: str,
) -> StowResult:
    """Store every part; raises multipart.MultipartError if the body itself is malformed."""
    result = StowResult()
    for part in iter_parts(stream, boundary, max_bytes=max_bytes, temp_dir=temp_dir):
        store_part(part, username=username, study_uid=study_uid, result=result)
    return result


def response_json(result: StowResult, retrieve_url) -> dict:
    """The Store Instances Response Module (PS3.18 10.5.3, PS3.4 Table CC.2.3-1) as DICOM JSON.

    ``retrieve_url(study_uid, sop_uid)`` gives an instance's WADO-RS URL, or None.
    """
    body: dict = {}
    if result.stored:
        body["00081199"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [class_uid]} if class_uid else {"vr": "UI"},
                    "00081155": {"vr": "UI", "Value": [sop_uid]},
                    "00081190": {"vr": "UR", "Value": [retrieve_url(study_uid, sop_uid)]},
                }
                for class_uid, sop_uid, study_uid in result.stored
            ],
        }
    if result.failed:
        body["00081198"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [class_uid]} if class_uid else {"vr": "UI"},
                    "00081155": {"vr": "UI", "Value": [sop_uid]} if sop_uid else {"vr": "UI"},
                    "00081197": {"vr": "US", "Value": [reason]},
                }
                for class_uid, sop_uid, reason, _text in result.failed
            ],
        }
    return dict(sorted(body.items()))
