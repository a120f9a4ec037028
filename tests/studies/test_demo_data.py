"""``manage.py make_demo_data``: varied, searchable, deterministic demo studies with real pixels."""

import io

import numpy as np
import pydicom
import pytest
from django.core.management import call_command

from studies import storage
from studies.demo_data import STUDY_KINDS, DemoPlanner, Sizes
from studies.models import Instance, Patient, Series, Study
from studies.selectors import StudyQuery, studies_search

# Marked so that pytest-django sets the test database up; the module's data is made once below.
pytestmark = pytest.mark.django_db

SEED = 7
# Tiny images and short stacks keep the run fast; the first patients cycle through every kind.
TINY = {"seed": SEED, "matrix": 32, "slices": 3}


def make_demo() -> dict[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("make_demo_data", patients=len(STUDY_KINDS), stdout=out, stderr=err, **TINY)
    return {"out": out.getvalue(), "err": err.getvalue()}


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker, tmp_path_factory):
    """One tiny demo archive for the module (storage in a folder of its own)."""
    from django.conf import settings

    original = settings.STORAGE_DIR
    settings.STORAGE_DIR = tmp_path_factory.mktemp("demo-storage")
    with django_db_blocker.unblock():
        made = make_demo()
    yield {**made, "storage": settings.STORAGE_DIR}
    with django_db_blocker.unblock():
        Patient.objects.all().delete()
    settings.STORAGE_DIR = original


@pytest.fixture
def archive(demo, settings):
    settings.STORAGE_DIR = demo["storage"]
    if not Instance.objects.exists():
        # Tests of other modules run in between (pytest-xdist) may have emptied the database;
        # the same seed makes the same archive again.
        demo.update(make_demo())
    return demo


def found(**query: object) -> list[Study]:
    return list(studies_search(StudyQuery(**query)))


def read(instance: Instance) -> pydicom.Dataset:
    return pydicom.dcmread(storage.absolute(instance.path))


def test_every_modality_is_there_through_ingest(archive) -> None:
    modalities = set(Series.objects.values_list("modality", flat=True))
    assert {"CT", "MR", "CR", "DX", "US", "SC"} <= modalities
    assert not Instance.objects.exclude(source=Instance.Source.DEMO).exists()
    assert archive["out"].startswith("Making ")
    assert f"{Instance.objects.count():,} stored" in archive["out"]
    assert archive["err"].strip().splitlines()[-1].startswith("demo: 100%")


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("muller", "MÜLLER^JÖRG"),
        ("MÜLLER^JÖ", "MÜLLER^JÖRG"),
        ("garcia lopez^maria", "GARCÍA LÓPEZ^MARÍA JOSÉ"),
        ("παπαδοπουλος", "ΠΑΠΑΔΟΠΟΥΛΟΣ^ΓΙΩΡΓΟΣ"),
        ("lefevre^francoise", "LEFÈVRE^FRANÇOISE"),
        ("yamada", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
        ("иванова", "ИВАНОВА^АННА^СЕРГЕЕВНА"),
        ("o'brien", "O'BRIEN^SEAN"),
        ("*cja", "WÓJCIK^ŁUCJA"),
        ("nobody", None),
    ],
)
def test_names_in_every_script_are_found_case_and_accent_blind(archive, typed, stored) -> None:
    names = {study.patient.name for study in found(patient_name=typed)}
    assert names == ({stored} if stored else set())


def test_every_search_field_has_something_to_find(archive) -> None:
    studies = list(Study.objects.select_related("patient"))
    assert len({s.institution for s in studies}) >= 3
    assert len({s.referring_physician for s in studies}) >= 3
    assert len({s.accession_number for s in studies}) == len(studies)
    assert {p.sex for p in Patient.objects.all()} == {"M", "F"}
    assert all(p.birth_date for p in Patient.objects.all())
    years = {s.study_date.year for s in studies}
    assert max(years) - min(years) >= 3
    for study in studies:
        assert found(accession_number=study.accession_number) == [study]
        assert study in found(institution=study.institution.lower())
        family = study.referring_physician.split("^")[0]
        assert study in found(referring_physician=family.lower())
        assert study in found(study_date=f"{study.study_date:%Y%m%d}")
        assert study in found(patient_id=study.patient.patient_id)
    us = found(modalities=["US"])
    assert us and all("US" in s.modality_list for s in us)


def test_character_sets_are_declared_and_encoded(archive) -> None:
    japanese = Instance.objects.filter(series__study__patient__name__startswith="Yamada").first()
    raw = storage.absolute(japanese.path).read_bytes()
    assert b"\x1b$B" in raw  # ISO 2022 escape to JIS X 0208 (PS3.5 H.3.1).
    ds = read(japanese)
    assert list(ds.SpecificCharacterSet) == ["", "ISO 2022 IR 87"]
    assert str(ds.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    greek = Instance.objects.filter(series__study__patient__name__startswith="ΠΑΠΑ").first()
    assert read(greek).SpecificCharacterSet == "ISO_IR 192"
    assert "ΠΑΠΑΔΟΠΟΥΛΟΣ".encode() in storage.absolute(greek.path).read_bytes()
    german = Instance.objects.filter(series__study__patient__name="MÜLLER^JÖRG").first()
    assert read(german).SpecificCharacterSet == "ISO_IR 100"
    assert "MÜLLER".encode("latin-1") in storage.absolute(german.path).read_bytes()


def test_ct_stacks_have_consistent_geometry_and_hounsfield_pixels(archive) -> None:
    series = Series.objects.filter(modality="CT").first()
    slices = [read(i) for i in series.instances.order_by("instance_number")]
    assert len(slices) == TINY["slices"]
    z = [float(ds.ImagePositionPatient[2]) for ds in slices]
    thickness = float(slices[0].SliceThickness)
    assert np.allclose(np.diff(z), thickness)
    for ds in slices:
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert len(ds.PixelSpacing) == 2 and float(ds.PixelSpacing[0]) > 0
        assert ds.FrameOfReferenceUID == slices[0].FrameOfReferenceUID
        assert ds.pixel_array.shape == (32, 32)
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
        assert ds.WindowCenter and ds.WindowWidth
    hu = slices[1].pixel_array.astype(float) - 1024
    assert hu.min() < -800  # Air around the body.
    assert hu.max() > 100  # Contrast or bone inside it.


def test_mr_radiographs_ultrasound_and_secondary_capture(archive) -> None:
    mr = read(Instance.objects.filter(series__modality="MR").first())
    assert mr.pixel_array.shape == (32, 32) and mr.pixel_array.std() > 0
    assert mr.MagneticFieldStrength and mr.EchoTime and mr.RepetitionTime
    cr = read(Instance.objects.filter(series__modality="CR").first())
    assert cr.pixel_array.shape == (64, 64) and cr.ViewPosition in ("PA", "LL")
    cine = read(Instance.objects.filter(series__modality="US").first())
    assert cine.PhotometricInterpretation == "RGB"
    assert cine.pixel_array.shape == (TINY["slices"], cine.Rows, cine.Columns, 3)
    assert int(cine.NumberOfFrames) == TINY["slices"] and cine.FrameIncrementPointer == 0x00181063
    sc = read(Instance.objects.filter(series__modality="SC").first())
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.ConversionType == "WSD"
    assert sc.pixel_array.shape[-1] == 3 and sc.pixel_array.max() > 100  # The report's text.


def test_same_seed_again_stores_nothing_new(archive) -> None:
    before = sorted(storage.iter_files())
    out = io.StringIO()
    call_command("make_demo_data", patients=2, stdout=out, stderr=io.StringIO(), **TINY)
    assert " 0 stored" in out.getvalue()
    assert sorted(storage.iter_files()) == before


def test_plans_are_deterministic_and_patients_do_not_depend_on_the_count() -> None:
    sizes = Sizes(matrix=16, slices=1)
    first = DemoPlanner(seed=SEED, sizes=sizes).patients(3)
    again = DemoPlanner(seed=SEED, sizes=sizes).patients(5)
    other = DemoPlanner(seed=SEED + 1, sizes=sizes).patients(3)

    def uids(patients):
        return [s.uid for p in patients for s in p.studies]

    assert uids(first) == uids(again[:3])
    assert not set(uids(first)) & set(uids(other))
    one = next(DemoPlanner(seed=SEED, sizes=sizes).instances(first[:1]))
    two = next(DemoPlanner(seed=SEED, sizes=sizes).instances(again[:1]))
    assert one == two and one.PixelData == two.PixelData
