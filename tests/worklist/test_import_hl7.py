"""``manage.py import_hl7``: files of HL7 messages into the worklist, with a summary."""

import io

import pytest
from django.core.management import CommandError, call_command

from tests.worklist import hl7_samples as s
from worklist.models import HL7Message, Order

pytestmark = pytest.mark.django_db


def run(*paths):
    out, err = io.StringIO(), io.StringIO()
    call_command("import_hl7", *map(str, paths), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_imports_files_and_reports_each_rejected_message(tmp_path):
    good = tmp_path / "radis.hl7"
    good.write_bytes(s.text(s.radis_orm()).encode("latin-1"))
    mixed = tmp_path / "medris.txt"
    bad = s.changed(s.medris_orm(control_id="M2", placer="55002", filler="RAD55002"), "PID", 3, "")
    mixed.write_bytes(s.text(s.medris_orm() + bad, ending="\n").encode("utf-8"))

    out, err = run(good, mixed)

    assert f"[1/2] {good}: 1 stored, 0 duplicates, 0 rejected" in err
    assert f"[2/2] {mixed}: 1 stored, 0 duplicates, 1 rejected" in err
    assert f"{mixed}: message 2 (MSH-10 'M2'): PID-3 patient ID is missing" in out
    assert "2 file(s), 3 message(s): 2 stored, 0 duplicates, 1 rejected" in out
    assert Order.objects.count() == 2
    assert HL7Message.objects.get(control_id="RADIS000101").source_detail == str(good)


def test_importing_the_same_file_again_is_all_duplicates_and_succeeds(tmp_path):
    path = tmp_path / "radis.hl7"
    path.write_bytes(s.text(s.radis_orm()).encode("latin-1"))
    run(path)
    out, _ = run(path)
    assert "1 file(s), 1 message(s): 0 stored, 1 duplicates, 0 rejected" in out
    assert Order.objects.count() == 1


def test_nothing_imported_exits_with_status_1(tmp_path):
    bad = tmp_path / "bad.hl7"
    bad.write_bytes(s.text(s.changed(s.radis_orm(), "OBR", 24, "")).encode("latin-1"))
    missing = tmp_path / "missing.hl7"
    out = io.StringIO()
    with pytest.raises(CommandError, match="nothing was imported") as caught:
        call_command(
            "import_hl7", str(bad), str(missing), str(tmp_path), stdout=out, stderr=io.StringIO()
        )
    assert caught.value.returncode == 1
    text = out.getvalue()
    assert f"{bad}: message 1 (MSH-10 'RADIS000101'): OBR-24 modality is missing" in text
    assert f"{missing}: cannot be read (No such file or directory)" in text
    assert f"{tmp_path}: is a folder; name the HL7 files in it" in text
    assert "3 file(s), 1 message(s): 0 stored, 0 duplicates, 1 rejected, 2 file(s) not read" in text


def test_file_over_the_limit_is_not_read(tmp_path, settings):
    settings.HL7_MAX_FILE_BYTES = 100
    path = tmp_path / "big.hl7"
    path.write_bytes(s.text(s.radis_orm()).encode("latin-1"))
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_hl7", str(path), stdout=out, stderr=io.StringIO())
    size = path.stat().st_size
    assert (
        f"{path}: not read, {size:,} bytes is more than the limit of 100 (HL7_MAX_FILE_BYTES)"
        in out.getvalue()
    )
    assert not HL7Message.objects.exists()
