"""The rows a patient's session is checked against on every request (pacsweb.lib.rows)."""

import datetime

from pacsweb.lib.rows import row_by_pk
from pacsweb.models import ServerSetup
from studies.models import Study
from tokens import services
from tokens.models import StudyToken


def fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_rows_read_by_primary_key_equal_what_the_orm_reads(clock, setup, make_study):
    study = make_study(patient_name="DOE^ÅSA")
    services.token_ensure(study=study)
    services.token_extend(study=study, through=datetime.date(2024, 12, 31))
    services.token_revoke(study=study)
    token = StudyToken.objects.get(study=study)
    study = Study.objects.get(pk=study.pk)
    for expected in (token, study, study.patient, ServerSetup.get()):
        read = row_by_pk(type(expected), expected.pk)
        assert type(read) is type(expected)
        assert fields(read) == fields(expected)
    read = row_by_pk(StudyToken, token.pk)
    assert read.revoked_at == clock.now and read.revoked_at.tzinfo is not None
    assert read.extended_through == datetime.date(2024, 12, 31)


def test_a_missing_or_malformed_key_reads_nothing(setup):
    assert row_by_pk(StudyToken, 10**9) is None
    assert row_by_pk(StudyToken, "1; DROP TABLE tokens_studytoken") is None
    assert row_by_pk(StudyToken, None) is None
