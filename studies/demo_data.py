"""Synthetic but realistic demo studies, for ``manage.py make_demo_data``.

Patients get names from several languages and DICOM character sets (Latin-1, UTF-8 and Japanese
ISO 2022), birth dates, sexes, referring physicians and institutions, and studies spread over ten
years: CT and MR series of a few dozen slices with consistent geometry, CR and DX radiographs,
ultrasound cine loops (multi-frame RGB) and a CT dose report as a secondary capture. The pixel
data are numerical phantoms (ellipses shaped like anatomy, with noise), made with numpy.

Everything follows from the seed: the same seed gives the same UIDs and the same bytes, and
patient ``n`` is the same whatever the number of patients asked for.
"""

import datetime
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

# The UUID namespace of pacsweb's demo data (a random UUID, fixed once).
UID_NAMESPACE = uuid.UUID("5f0c6a39-2d0e-4a53-9a3c-1f7c3e51b8a2")
DEFAULT_UNTIL = datetime.date(2026, 6, 30)
YEARS_SPREAD = 10
ISSUER = "PACSWEB-DEMO"
MANUFACTURER = "pacsweb demo phantoms"

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

LATIN1 = "ISO_IR 100"
UTF8 = "ISO_IR 192"
# PS3.5 H.3.1: the first value empty (ASCII by default), JIS X 0208 reached by escape sequences.
JAPANESE = ["", "ISO 2022 IR 87"]
_CODECS = {"": "ascii", LATIN1: "latin_1", UTF8: "utf-8"}


def _charset_key(charset: str | list[str]) -> str:
    return "\\".join(charset) if isinstance(charset, list) else charset


def encodable(text: str, charset: str | list[str]) -> bool:
    """Whether ``text`` fits the character set (Japanese data sets get ASCII for other names)."""
    codec = _CODECS.get(_charset_key(charset), "ascii")
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class Person:
    name: str
    sex: str
    charset: str | list[str]


# The first patients show every character set and script the search must handle.
SHOWCASE = [
    Person("MÜLLER^JÖRG", "M", LATIN1),
    Person("GARCÍA LÓPEZ^MARÍA JOSÉ", "F", LATIN1),
    Person("ΠΑΠΑΔΟΠΟΥΛΟΣ^ΓΙΩΡΓΟΣ", "M", UTF8),
    Person("LEFÈVRE^FRANÇOISE", "F", LATIN1),
    Person("Yamada^Tarou=山田^太郎=やまだ^たろう", "M", JAPANESE),
    Person("ИВАНОВА^АННА^СЕРГЕЕВНА", "F", UTF8),
    Person("O'BRIEN^SEAN", "M", ""),
    Person("WÓJCIK^ŁUCJA", "F", UTF8),
    Person("ØSTERGAARD^SØREN", "M", LATIN1),
    Person("SMITH^JANE^A", "F", ""),
]


@dataclass(frozen=True)
class Locale:
    charset: str
    family_m: tuple[str, ...]
    family_f: tuple[str, ...]
    given_m: tuple[str, ...]
    given_f: tuple[str, ...]


LOCALES = [
    Locale(
        LATIN1,
        ("SCHNEIDER", "WEIß", "KÖHLER", "HOFFMANN", "BRÄUER"),
        ("SCHNEIDER", "WEIß", "KÖHLER", "HOFFMANN", "BRÄUER"),
        ("JÜRGEN", "LUKAS", "STEFAN", "GÜNTER"),
        ("BÄRBEL", "GRETA", "JULIA", "MÄRTA"),
    ),
    Locale(
        LATIN1,
        ("MARTÍNEZ", "NÚÑEZ", "PEÑA", "RODRÍGUEZ", "IBÁÑEZ"),
        ("MARTÍNEZ", "NÚÑEZ", "PEÑA", "RODRÍGUEZ", "IBÁÑEZ"),
        ("JOSÉ", "ÁLVARO", "JESÚS", "IÑIGO"),
        ("LUCÍA", "INÉS", "ROCÍO", "MARÍA"),
    ),
    Locale(
        LATIN1,
        ("DUPONT", "BÉRANGER", "GIRARD", "MÉNARD", "LEFÈVRE"),
        ("DUPONT", "BÉRANGER", "GIRARD", "MÉNARD", "LEFÈVRE"),
        ("FRANÇOIS", "JÉRÔME", "LOÏC", "THÉO"),
        ("HÉLÈNE", "CÉCILE", "ZOÉ", "MÉLANIE"),
    ),
    Locale(
        "",
        ("SMITH", "JOHNSON", "O'CONNOR", "MACDONALD", "TAYLOR"),
        ("SMITH", "JOHNSON", "O'CONNOR", "MACDONALD", "TAYLOR"),
        ("JOHN", "MICHAEL", "DAVID", "LIAM"),
        ("EMMA", "OLIVIA", "SARAH", "KATE"),
    ),
    Locale(
        UTF8,
        ("ΝΙΚΟΛΑΟΥ", "ΒΛΑΧΟΣ", "ΓΕΩΡΓΙΟΥ"),
        ("ΝΙΚΟΛΑΟΥ", "ΒΛΑΧΟΥ", "ΓΕΩΡΓΙΟΥ"),
        ("ΝΙΚΟΣ", "ΔΗΜΗΤΡΗΣ", "ΚΩΣΤΑΣ"),
        ("ΕΛΕΝΗ", "ΜΑΡΙΑ", "ΣΟΦΙΑ"),
    ),
    Locale(
        UTF8,
        ("СМИРНОВ", "КУЗНЕЦОВ", "ПОПОВ"),
        ("СМИРНОВА", "КУЗНЕЦОВА", "ПОПОВА"),
        ("ДМИТРИЙ", "АЛЕКСЕЙ", "ИВАН"),
        ("ОЛЬГА", "ТАТЬЯНА", "НАТАЛЬЯ"),
    ),
    Locale(
        UTF8,
        ("KOWALSKI", "LEWANDOWSKI", "WÓJCIK"),
        ("KOWALSKA", "LEWANDOWSKA", "WÓJCIK"),
        ("ŁUKASZ", "PAWEŁ", "MICHAŁ"),
        ("AGNIESZKA", "MAŁGORZATA", "ŻANETA"),
    ),
    Locale(
        LATIN1,
        ("JÆGER", "ÅBERG", "LINDSTRÖM", "SØRENSEN"),
        ("JÆGER", "ÅBERG", "LINDSTRÖM", "SØRENSEN"),
        ("ÅKE", "BJÖRN", "ØYVIND"),
        ("ÅSA", "INGRÍÐ", "SÓLEY"),
    ),
]
# Alphabetic, ideographic and phonetic groups (PS3.5 6.2.1.2), as Japanese modalities send them.
JAPANESE_FAMILIES = [("Tanaka", "田中", "たなか"), ("Suzuki", "鈴木", "すずき")]
JAPANESE_GIVEN_M = [("Hiroshi", "博", "ひろし"), ("Kenji", "健二", "けんじ")]
JAPANESE_GIVEN_F = [("Hanako", "花子", "はなこ"), ("Yuki", "由紀", "ゆき")]

REFERRING = [
    "HOUSE^GREGORY^^DR",
    "DUBOIS^CLAIRE^^DR",
    "SCHMIDT^ANDREAS^^DR.MED.",
    "NÚÑEZ^PABLO^^DR",
    "WAGNER^BÄRBEL^^DR",
    "O'CONNOR^MAEVE^^DR",
    "ΑΛΕΞΙΟΥ^ΚΩΝΣΤΑΝΤΙΝΟΣ",
    "ПЕТРОВ^ИГОРЬ^НИКОЛАЕВИЧ",
    "Sato^Kenji",
]
INSTITUTIONS = [
    "Riverside General Hospital",
    "Klinikum Südstadt",
    "Hospital Universitario Santa Lucía",
    "Hôpital Saint-Éloi",
    "Nordic Imaging Centre",
    "Γενικό Νοσοκομείο Πατρών",
    "Городская клиническая больница № 7",
    "Sakura Clinic",
]


@dataclass
class Geometry:
    """Where a stack of images lies in the patient (PS3.3 C.7.6.2)."""

    orientation: list[float]
    spacing: float  # Pixel spacing, mm.
    thickness: float  # Slice thickness and spacing between slices, mm.
    normal_axis: int  # The patient axis the stack advances along (0 x, 1 y, 2 z).
    start: float  # Position of the first slice on that axis, mm.


@dataclass
class SeriesPlan:
    modality: str
    description: str
    sop_class: str
    count: int  # Instances in the series.
    make: Callable[["SeriesPlan", int, np.random.Generator], Dataset]
    body_part: str
    protocol: str = ""
    phantom: str = ""
    geometry: Geometry | None = None
    extra: dict = field(default_factory=dict)
    # Filled when the plan is made.
    uid: str = ""
    number: int = 0
    frame_of_reference: str = ""
    study: "StudyPlan | None" = None


@dataclass
class StudyPlan:
    kind: str
    description: str
    date: datetime.date
    time: str
    accession: str
    study_id: str
    referring: str
    institution: str
    uid: str
    patient: "PatientPlan"
    series: list[SeriesPlan] = field(default_factory=list)


@dataclass
class PatientPlan:
    index: int
    person: Person
    patient_id: str
    birth_date: datetime.date
    studies: list[StudyPlan] = field(default_factory=list)


@dataclass(frozen=True)
class Sizes:
    """Image sizes; tests shrink them. ``slices`` overrides stack lengths and cine frames."""

    matrix: int = 512
    slices: int | None = None


class DemoPlanner:
    """Turns (seed, sizes) into patients, studies and series, before any pixel is made."""

    def __init__(self, *, seed: int, sizes: Sizes, until: datetime.date = DEFAULT_UNTIL) -> None:
        self.seed = seed
        self.sizes = sizes
        self.until = until

    def uid(self, *parts: object) -> str:
        # PS3.5 B.2: a UID derived from a name-based UUID (RFC 9562 version 5), so the same
        # seed and position always give the same UID.
        name = "/".join(["make_demo_data", str(self.seed), *map(str, parts)])
        return f"2.25.{uuid.uuid5(UID_NAMESPACE, name).int}"

    def rng(self, *parts: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *parts])

    def patients(self, count: int) -> list[PatientPlan]:
        return [self._patient(index) for index in range(count)]

    def _patient(self, index: int) -> PatientPlan:
        rng = self.rng(index)
        person = SHOWCASE[index] if index < len(SHOWCASE) else self._random_person(rng)
        birth = self.until - datetime.timedelta(days=int(rng.integers(18 * 365, 90 * 365)))
        patient = PatientPlan(index, person, f"PW{self.seed}-{index + 1:04d}", birth)
        home = self._choose(rng, INSTITUTIONS, person.charset)
        count = 1 + int(rng.random() < 0.45) + int(rng.random() < 0.15)
        # The first studies cycle through the kinds so that a few patients show every modality.
        kinds = [
            STUDY_KINDS[(index + k) % len(STUDY_KINDS)]
            if k == 0
            else STUDY_KINDS[int(rng.integers(len(STUDY_KINDS)))]
            for k in range(count)
        ]
        for number, kind in enumerate(kinds):
            institution = (
                home if rng.random() < 0.8 else self._choose(rng, INSTITUTIONS, person.charset)
            )
            patient.studies.append(self._study(patient, number, kind, institution, rng))
        return patient

    def _random_person(self, rng: np.random.Generator) -> Person:
        sex = "M" if rng.random() < 0.5 else "F"
        if rng.random() < 0.12:
            families = JAPANESE_FAMILIES
            givens = JAPANESE_GIVEN_M if sex == "M" else JAPANESE_GIVEN_F
            family = families[int(rng.integers(len(families)))]
            given = givens[int(rng.integers(len(givens)))]
            name = "=".join(f"{f}^{g}" for f, g in zip(family, given, strict=True))
            return Person(name, sex, JAPANESE)
        locale = LOCALES[int(rng.integers(len(LOCALES)))]
        families = locale.family_m if sex == "M" else locale.family_f
        givens = locale.given_m if sex == "M" else locale.given_f
        family = families[int(rng.integers(len(families)))]
        given = givens[int(rng.integers(len(givens)))]
        return Person(f"{family}^{given}", sex, locale.charset)

    @staticmethod
    def _choose(rng: np.random.Generator, pool: list[str], charset: str | list[str]) -> str:
        fitting = [value for value in pool if encodable(value, charset)]
        return fitting[int(rng.integers(len(fitting)))]

    def _study(
        self,
        patient: PatientPlan,
        number: int,
        kind: "StudyKind",
        institution: str,
        rng: np.random.Generator,
    ) -> StudyPlan:
        date = self.until - datetime.timedelta(days=int(rng.integers(0, YEARS_SPREAD * 365)))
        date = max(date, patient.birth_date + datetime.timedelta(days=1))
        study = StudyPlan(
            kind=kind.name,
            description=kind.description,
            date=date,
            time=f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}",
            accession=f"{date:%Y%m%d}{self.seed % 100:02d}{patient.index:04d}{number}",
            study_id=str(int(rng.integers(1000, 99999))),
            referring=self._choose(rng, REFERRING, patient.person.charset),
            institution=institution,
            uid=self.uid(patient.index, number),
            patient=patient,
        )
        for series_number, series in enumerate(kind.series(self.sizes), start=1):
            series.uid = self.uid(patient.index, number, series_number)
            series.number = series_number
            series.frame_of_reference = self.uid(patient.index, number, "frame-of-reference")
            series.study = study
            series.extra["matrix"] = self.sizes.matrix
            study.series.append(series)
        return study

    def instances(self, patients: list[PatientPlan]) -> Iterator[Dataset]:
        """Every instance of the plan, made one at a time (pixel data included)."""
        for patient in patients:
            for study_number, study in enumerate(patient.studies):
                for series in study.series:
                    rng = self.rng(patient.index, study_number, series.number)
                    for index in range(series.count):
                        ds = series.make(series, index, rng)
                        self._common(ds, series, index)
                        yield ds

    def _common(self, ds: Dataset, series: SeriesPlan, index: int) -> None:
        study = series.study
        patient = study.patient
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        if patient.person.charset:
            # Without it, the default repertoire (ASCII) applies (PS3.3 C.12.1.1.2).
            ds.SpecificCharacterSet = patient.person.charset
        ds.SOPClassUID = series.sop_class
        ds.SOPInstanceUID = self.uid(patient.index, study.uid, series.number, index)
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = f"{study.date:%Y%m%d}"
        ds.StudyTime = study.time
        ds.SeriesTime = (
            f"{int(study.time[:2]):02d}{min(int(study.time[2:4]) + series.number, 59):02d}00"
        )
        ds.ContentTime = ds.SeriesTime
        ds.AccessionNumber = study.accession
        ds.Modality = series.modality
        ds.Manufacturer = MANUFACTURER
        ds.InstitutionName = study.institution
        ds.ReferringPhysicianName = study.referring
        ds.StationName = f"{series.modality}01"
        ds.StudyDescription = study.description
        ds.SeriesDescription = series.description
        ds.PatientName = patient.person.name
        ds.PatientID = patient.patient_id
        ds.IssuerOfPatientID = ISSUER
        ds.PatientBirthDate = f"{patient.birth_date:%Y%m%d}"
        ds.PatientSex = patient.person.sex
        ds.PatientAge = f"{(study.date - patient.birth_date).days // 365:03d}Y"
        ds.BodyPartExamined = series.body_part
        if series.protocol:
            ds.ProtocolName = series.protocol
        ds.StudyInstanceUID = study.uid
        ds.SeriesInstanceUID = series.uid
        ds.StudyID = study.study_id
        ds.SeriesNumber = series.number
        ds.InstanceNumber = index + 1
        if series.geometry is not None:
            ds.FrameOfReferenceUID = series.frame_of_reference
            ds.PositionReferenceIndicator = ""


# --- study kinds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyKind:
    name: str
    description: str
    series: Callable[[Sizes], list[SeriesPlan]]


def _stack(sizes: Sizes, default: int) -> int:
    return sizes.slices or default


def _ct_chest(sizes: Sizes) -> list[SeriesPlan]:
    return [
        SeriesPlan(
            "CT",
            "CHEST 5.0 MM AXIAL",
            CT_IMAGE,
            _stack(sizes, 32),
            _ct_slice,
            "CHEST",
            protocol="CHEST ROUTINE WITH CONTRAST",
            phantom="chest",
            geometry=Geometry([1, 0, 0, 0, 1, 0], 0.72, 5.0, 2, -260.0),
            extra={"windows": ([40, -600], [400, 1500], ["MEDIASTINUM", "LUNG"]), "kvp": 120},
        ),
        SeriesPlan("SC", "DOSE REPORT", SECONDARY_CAPTURE, 1, _dose_report, "CHEST"),
    ]


def _ct_head(sizes: Sizes) -> list[SeriesPlan]:
    return [
        SeriesPlan(
            "CT",
            "HEAD 5.0 MM AXIAL",
            CT_IMAGE,
            _stack(sizes, 28),
            _ct_slice,
            "HEAD",
            protocol="HEAD NON CONTRAST",
            phantom="head",
            geometry=Geometry([1, 0, 0, 0, 1, 0], 0.45, 5.0, 2, -80.0),
            extra={"windows": ([40, 600], [80, 2800], ["BRAIN", "BONE"]), "kvp": 120},
        )
    ]


def _ct_abdomen(sizes: Sizes) -> list[SeriesPlan]:
    return [
        SeriesPlan(
            "CT",
            "ABDOMEN PORTAL VENOUS 5.0 MM",
            CT_IMAGE,
            _stack(sizes, 32),
            _ct_slice,
            "ABDOMEN",
            protocol="ABDOMEN PELVIS PORTAL",
            phantom="abdomen",
            geometry=Geometry([1, 0, 0, 0, 1, 0], 0.78, 5.0, 2, -420.0),
            extra={"windows": ([50, 60], [400, 160], ["SOFT TISSUE", "LIVER"]), "kvp": 100},
        ),
        SeriesPlan("SC", "DOSE REPORT", SECONDARY_CAPTURE, 1, _dose_report, "ABDOMEN"),
    ]


def _mr_brain(sizes: Sizes) -> list[SeriesPlan]:
    geometry = Geometry([1, 0, 0, 0, 1, 0], 0.47, 5.0, 2, -60.0)
    return [
        SeriesPlan(
            "MR",
            "T1 SE AXIAL",
            MR_IMAGE,
            _stack(sizes, 22),
            _mr_slice,
            "BRAIN",
            protocol="BRAIN ROUTINE",
            phantom="brain",
            geometry=geometry,
            extra={"weighting": "T1", "tr": 500, "te": 12},
        ),
        SeriesPlan(
            "MR",
            "T2 TSE AXIAL",
            MR_IMAGE,
            _stack(sizes, 22),
            _mr_slice,
            "BRAIN",
            protocol="BRAIN ROUTINE",
            phantom="brain",
            geometry=geometry,
            extra={"weighting": "T2", "tr": 4000, "te": 100},
        ),
    ]


def _mr_knee(sizes: Sizes) -> list[SeriesPlan]:
    return [
        SeriesPlan(
            "MR",
            "PD FS SAGITTAL",
            MR_IMAGE,
            _stack(sizes, 24),
            _mr_slice,
            "KNEE",
            protocol="KNEE LEFT",
            phantom="knee",
            geometry=Geometry([0, 1, 0, 0, 0, -1], 0.31, 3.5, 0, -42.0),
            extra={"weighting": "PD", "tr": 3000, "te": 30},
        )
    ]


def _cr_chest(sizes: Sizes) -> list[SeriesPlan]:
    return [
        SeriesPlan("CR", "CHEST PA", CR_IMAGE, 1, _radiograph, "CHEST", phantom="chest-pa"),
        SeriesPlan("CR", "CHEST LATERAL", CR_IMAGE, 1, _radiograph, "CHEST", phantom="chest-lat"),
    ]


def _dx_hand(sizes: Sizes) -> list[SeriesPlan]:
    return [SeriesPlan("DX", "HAND RIGHT PA", DX_IMAGE, 1, _radiograph, "HAND", phantom="hand")]


def _us_abdomen(sizes: Sizes) -> list[SeriesPlan]:
    return [
        SeriesPlan(
            "US",
            "LIVER CINE",
            US_MULTIFRAME,
            1,
            _us_cine,
            "ABDOMEN",
            extra={"frames": _stack(sizes, 12)},
        ),
        SeriesPlan(
            "US",
            "GALLBLADDER CINE",
            US_MULTIFRAME,
            1,
            _us_cine,
            "ABDOMEN",
            extra={"frames": _stack(sizes, 8)},
        ),
    ]


STUDY_KINDS = [
    StudyKind("ct-chest", "CT CHEST WITH CONTRAST", _ct_chest),
    StudyKind("mr-brain", "MR BRAIN WITHOUT CONTRAST", _mr_brain),
    StudyKind("cr-chest", "XR CHEST PA AND LATERAL", _cr_chest),
    StudyKind("us-abdomen", "US ABDOMEN COMPLETE", _us_abdomen),
    StudyKind("dx-hand", "XR HAND RIGHT 2 VIEWS", _dx_hand),
    StudyKind("ct-head", "CT HEAD WITHOUT CONTRAST", _ct_head),
    StudyKind("mr-knee", "MR KNEE LEFT", _mr_knee),
    StudyKind("ct-abdomen", "CT ABDOMEN PELVIS WITH CONTRAST", _ct_abdomen),
]


# --- phantoms --------------------------------------------------------------------------------


def _grid(rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates: x and y from -1 to 1 across the field of view."""
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    return x / (columns - 1) * 2 - 1, y / (rows - 1) * 2 - 1


def _ellipse(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float, angle: float = 0.0
) -> np.ndarray:
    if a <= 0 or b <= 0:
        return np.zeros_like(x, dtype=bool)
    cos, sin = math.cos(angle), math.sin(angle)
    u = (x - cx) * cos + (y - cy) * sin
    v = -(x - cx) * sin + (y - cy) * cos
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def _blur(image: np.ndarray, radius: int) -> np.ndarray:
    """A box blur along both axes (twice, close to a Gaussian) from cumulative sums."""
    if radius < 1:
        return image
    out = image.astype(np.float32)
    for _ in range(2):
        for axis in (0, 1):
            padded = np.pad(
                out, [(radius + 1, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge"
            )
            summed = np.cumsum(padded, axis=axis)
            upper = np.take(summed, range(2 * radius + 1, summed.shape[axis]), axis=axis)
            lower = np.take(summed, range(0, summed.shape[axis] - 2 * radius - 1), axis=axis)
            out = (upper - lower) / (2 * radius + 1)
    return out


def _profile(t: float, centre: float, half: float) -> float:
    """How wide an organ is at slice position t (0..1): a half-ellipse along the stack."""
    value = 1 - ((t - centre) / half) ** 2
    return math.sqrt(value) if value > 0 else 0.0


def _head(x: np.ndarray, y: np.ndarray, t: float, values: dict[str, float]) -> np.ndarray:
    image = np.full(x.shape, values["air"], dtype=np.float32)
    s = _profile(t, 0.45, 0.62)
    image[_ellipse(x, y, 0, 0.02, 0.74 * s, 0.9 * s)] = values["scalp"]
    image[_ellipse(x, y, 0, 0.02, 0.7 * s, 0.86 * s)] = values["bone"]
    brain = _ellipse(x, y, 0, 0.03, 0.64 * s, 0.8 * s)
    image[brain] = values["grey"]
    image[brain & _ellipse(x, y, 0, 0.03, 0.5 * s, 0.66 * s)] = values["white"]
    v = _profile(t, 0.55, 0.18)
    for side in (-1, 1):
        image[_ellipse(x, y, 0.09 * side, -0.05, 0.07 * v, 0.26 * v, 0.25 * side)] = values["csf"]
    if t < 0.3:
        eyes = _profile(t, 0.15, 0.14)
        for side in (-1, 1):
            image[_ellipse(x, y, 0.3 * side, -0.72, 0.13 * eyes, 0.12 * eyes)] = values["eye"]
    return image


def _chest(x: np.ndarray, y: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    image = np.full(x.shape, -1000.0, dtype=np.float32)
    body = _ellipse(x, y, 0, 0.05, 0.86, 0.6)
    image[body] = -90  # Subcutaneous fat.
    image[_ellipse(x, y, 0, 0.05, 0.8, 0.54)] = 45  # Muscle and mediastinum.
    lung_size = _profile(t, 0.55, 0.55)
    for side in (-1, 1):
        lung = _ellipse(x, y, 0.36 * side, 0.0, 0.3 * lung_size, 0.42 * lung_size, 0.1 * side)
        image[lung] = -860
    vessels = rng.random((24, 3))
    for vx, vy, vr in vessels:
        cx, cy = (vx * 0.5 + 0.12) * (1 if vx > 0.5 else -1), vy * 0.6 - 0.3
        image[_ellipse(x, y, cx, cy, 0.008 + vr * 0.01, 0.008 + vr * 0.01) & (image < -500)] = 30
    heart = _profile(t, 0.3, 0.3)
    image[_ellipse(x, y, 0.08, -0.05, 0.26 * heart, 0.22 * heart, -0.5)] = 40
    image[_ellipse(x, y, 0.14, -0.05, 0.09 * heart, 0.08 * heart)] = 180  # Contrast in a ventricle.
    image[_ellipse(x, y, -0.06, 0.22, 0.06, 0.06)] = 210  # Descending aorta with contrast.
    image[_ellipse(x, y, 0, 0.4, 0.08, 0.08)] = 650  # Vertebral body.
    image[_ellipse(x, y, 0, 0.52, 0.03, 0.06)] = 700  # Spinous process.
    if math.sin(t * 22) > 0.2:  # Ribs cross the slices at intervals.
        angle = np.arctan2(y - 0.05, x / 0.86 * 0.6)
        ring = _ellipse(x, y, 0, 0.05, 0.78, 0.52) & ~_ellipse(x, y, 0, 0.05, 0.74, 0.48)
        image[ring & (np.cos(angle * 9) > 0.55)] = 800
    return image


def _abdomen(x: np.ndarray, y: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    image = np.full(x.shape, -1000.0, dtype=np.float32)
    image[_ellipse(x, y, 0, 0.05, 0.82, 0.62)] = -100
    image[_ellipse(x, y, 0, 0.05, 0.76, 0.56)] = 35
    liver = _profile(t, 0.25, 0.35)
    image[_ellipse(x, y, -0.38, -0.05, 0.36 * liver, 0.38 * liver, 0.3)] = 110
    spleen = _profile(t, 0.25, 0.2)
    image[_ellipse(x, y, 0.48, 0.12, 0.14 * spleen, 0.22 * spleen)] = 120
    kidneys = _profile(t, 0.45, 0.2)
    for side in (-1, 1):
        image[_ellipse(x, y, 0.3 * side, 0.25, 0.1 * kidneys, 0.16 * kidneys, 0.4 * side)] = 170
    bowel = _profile(t, 0.7, 0.35)
    for bx, by, br in rng.random((9, 3)):
        image[
            _ellipse(
                x,
                y,
                bx * 0.9 - 0.45,
                by * 0.5 - 0.35,
                (0.03 + br * 0.05) * bowel,
                (0.03 + br * 0.04) * bowel,
            )
        ] = -900 if br > 0.7 else 20
    image[_ellipse(x, y, 0.05, 0.2, 0.05, 0.05)] = 190  # Aorta.
    image[_ellipse(x, y, 0, 0.42, 0.09, 0.08)] = 650  # Vertebral body.
    return image


def _knee(x: np.ndarray, y: np.ndarray, t: float, values: dict[str, float]) -> np.ndarray:
    """A sagittal knee: columns run from anterior (left) to posterior, rows downwards."""
    image = np.zeros(x.shape, dtype=np.float32)
    s = _profile(t, 0.5, 0.6)
    image[_ellipse(x, y, 0.05, 0, 0.62 * s, 1.05)] = values["fat"]
    for centre in (-0.55, 0.6):  # Hamstrings above, calf muscles below, behind the bones.
        image[_ellipse(x, y, 0.32, centre, 0.28 * s, 0.5)] = values["muscle"]
    image[_ellipse(x, y, -0.3, 0.12, 0.04 * s, 0.3, -0.2)] = values["cortex"]  # Patellar tendon.
    femur = _ellipse(x, y, 0, -0.5, 0.2 * s, 0.6) | _ellipse(x, y, 0.02, -0.08, 0.28 * s, 0.17)
    tibia = _ellipse(x, y, 0, 0.62, 0.18 * s, 0.55) | _ellipse(x, y, 0, 0.2, 0.27 * s, 0.1)
    patella = _ellipse(x, y, -0.4 * s, -0.12, 0.07 * s, 0.14)
    cartilage = _ellipse(x, y, 0.02, -0.08, 0.31 * s, 0.2) | _ellipse(x, y, 0, 0.2, 0.3 * s, 0.13)
    image[_ellipse(x, y, 0.05, 0.06, 0.12 * s, 0.05)] = values["fluid"]  # Joint effusion.
    image[cartilage] = values["cartilage"]
    cortex = femur | tibia | patella
    image[cortex] = values["cortex"]
    marrow = (
        _ellipse(x, y, 0, -0.5, 0.17 * s, 0.58)
        | _ellipse(x, y, 0.02, -0.08, 0.25 * s, 0.14)
        | _ellipse(x, y, 0, 0.62, 0.15 * s, 0.53)
        | _ellipse(x, y, 0, 0.21, 0.24 * s, 0.07)
        | _ellipse(x, y, -0.4 * s, -0.12, 0.05 * s, 0.12)
    )
    image[marrow & cortex] = values["marrow"]
    return image


def _stack_position(series: SeriesPlan, index: int) -> tuple[list[float], float]:
    geometry = series.geometry
    rows = columns = series.extra["matrix"]
    half = geometry.spacing * (columns - 1) / 2
    along = geometry.start + index * geometry.thickness
    if geometry.normal_axis == 2:
        return [-half, -half * rows / columns, along], along
    # Sagittal: rows run down the patient (-z), columns toward posterior (+y).
    return [along, -half, half * rows / columns], along


def _set_geometry(ds: Dataset, series: SeriesPlan, index: int) -> None:
    geometry = series.geometry
    position, location = _stack_position(series, index)
    ds.ImageOrientationPatient = [f"{v:g}" for v in geometry.orientation]
    ds.ImagePositionPatient = [f"{v:.3f}" for v in position]
    ds.SliceLocation = f"{location:.3f}"
    ds.PixelSpacing = [f"{geometry.spacing:g}", f"{geometry.spacing:g}"]
    ds.SliceThickness = f"{geometry.thickness:g}"
    ds.SpacingBetweenSlices = f"{geometry.thickness:g}"
    ds.PatientPosition = "HFS" if series.modality == "CT" or series.phantom == "brain" else "FFS"


def _mono16(ds: Dataset, pixels: np.ndarray, bits_stored: int = 12) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    top = (1 << bits_stored) - 1
    ds.PixelData = np.clip(np.rint(pixels), 0, top).astype("<u2").tobytes()


def _ct_slice(series: SeriesPlan, index: int, rng: np.random.Generator) -> Dataset:
    matrix = series.extra["matrix"]
    x, y = _grid(matrix, matrix)
    t = (index + 0.5) / series.count
    if series.phantom == "head":
        values = {
            "air": -1000,
            "scalp": 30,
            "bone": 1100,
            "grey": 40,
            "white": 28,
            "csf": 6,
            "eye": 12,
        }
        hu = _head(x, y, t, values)
    elif series.phantom == "chest":
        hu = _chest(x, y, t, rng)
    else:
        hu = _abdomen(x, y, t, rng)
    hu = _blur(hu, max(matrix // 256, 1)) + rng.normal(0, 12, hu.shape)
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    _set_geometry(ds, series, index)
    ds.KVP = series.extra["kvp"]
    ds.XRayTubeCurrent = int(rng.integers(180, 320))
    ds.ExposureTime = 500
    ds.ConvolutionKernel = "STANDARD"
    ds.AcquisitionNumber = 1
    # Stored values are Hounsfield units plus 1024 (PS3.3 C.8.2.1.1.3, C.11.1.1.2).
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    centres, widths, explanation = series.extra["windows"]
    ds.WindowCenter = [str(c) for c in centres]
    ds.WindowWidth = [str(w) for w in widths]
    ds.WindowCenterWidthExplanation = explanation
    _mono16(ds, hu + 1024)
    return ds


def _mr_slice(series: SeriesPlan, index: int, rng: np.random.Generator) -> Dataset:
    matrix = series.extra["matrix"]
    x, y = _grid(matrix, matrix)
    t = (index + 0.5) / series.count
    weighting = series.extra["weighting"]
    if series.phantom == "knee":
        # Proton density with fat suppression: fat and marrow dark, fluid bright.
        values = {
            "fat": 160,
            "muscle": 460,
            "marrow": 190,
            "cortex": 15,
            "cartilage": 760,
            "fluid": 1500,
        }
        signal = _knee(x, y, t, values)
    else:
        values = {
            "T1": {
                "air": 0,
                "scalp": 1100,
                "bone": 60,
                "grey": 560,
                "white": 820,
                "csf": 180,
                "eye": 200,
            },
            "T2": {
                "air": 0,
                "scalp": 700,
                "bone": 40,
                "grey": 820,
                "white": 560,
                "csf": 1600,
                "eye": 1700,
            },
        }[weighting]
        signal = _head(x, y, t, values)
    # A smooth coil sensitivity (brighter near the surface) and Rician noise, as MR images have.
    bias = 0.85 + 0.3 * (x**2 + y**2)
    signal = _blur(signal, max(matrix // 200, 1)) * bias
    noise = 18
    magnitude = np.hypot(
        signal + rng.normal(0, noise, signal.shape), rng.normal(0, noise, signal.shape)
    )
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    _set_geometry(ds, series, index)
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "SK"
    ds.ScanOptions = "FS" if weighting == "PD" else ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = str(series.extra["tr"])
    ds.EchoTime = str(series.extra["te"])
    ds.EchoTrainLength = 1 if weighting == "T1" else 12
    ds.MagneticFieldStrength = "1.5"
    ds.ImagingFrequency = "63.87"
    ds.ImagedNucleus = "1H"
    ds.AcquisitionNumber = 1
    low, high = np.percentile(magnitude, [1, 99.5])
    ds.WindowCenter = f"{(low + high) / 2:.0f}"
    ds.WindowWidth = f"{max(high - low, 1):.0f}"
    _mono16(ds, magnitude)
    return ds


def _radiograph(series: SeriesPlan, index: int, rng: np.random.Generator) -> Dataset:
    matrix = series.extra["matrix"] * 2
    if series.phantom == "hand":
        rows, columns = matrix, int(matrix * 0.8)
    else:
        rows, columns = matrix, matrix
    x, y = _grid(rows, columns)
    # Attenuation along each ray, summed through the body: bright is dense (MONOCHROME2).
    density = np.zeros(x.shape, dtype=np.float32)
    if series.phantom == "chest-pa":
        density[_ellipse(x, y, 0, 0.1, 0.85, 1.05)] = 1.0
        for side in (-1, 1):
            density[_ellipse(x, y, 0.38 * side, -0.05, 0.28, 0.6)] = 0.35
        density[_ellipse(x, y, 0.12, 0.25, 0.3, 0.3)] += 0.5  # Heart shadow.
        density[np.abs(x) < 0.07] += 0.7  # Spine.
        for rib in range(10):
            arc = np.abs(y - (-0.62 + rib * 0.12) - 0.18 * x**2) < 0.018
            density[arc & _ellipse(x, y, 0, 0.0, 0.75, 0.8)] += 0.35
        density[_ellipse(x, y, 0, -0.85, 0.5, 0.08)] += 0.4  # Clavicles.
    elif series.phantom == "chest-lat":
        density[_ellipse(x, y, 0, 0.1, 0.6, 1.05)] = 1.0
        density[_ellipse(x, y, -0.05, -0.05, 0.45, 0.6)] = 0.4
        density[_ellipse(x, y, -0.2, 0.3, 0.28, 0.3)] += 0.5
        density[(x > 0.38) & (x < 0.52) & (np.abs(y) < 0.9)] += 0.8  # Spine, seen from the side.
    else:
        density[_ellipse(x, y, 0, 0.45, 0.55, 0.42)] = 0.6  # Palm.
        for finger, (fx, length) in enumerate(
            [(-0.62, 0.35), (-0.3, 0.6), (0, 0.7), (0.28, 0.62), (0.52, 0.45)]
        ):
            top = 0.1 - length
            tilt = -0.25 if finger == 0 else 0.0
            density[_ellipse(x, y, fx, top + length / 2 + 0.05, 0.1, length / 2 + 0.08, tilt)] = 0.6
            for joint in range(3):
                centre = top + (joint + 0.5) * length / 3 + 0.05
                density[_ellipse(x, y, fx, centre, 0.05, length / 7, tilt)] += 0.9
            density[_ellipse(x, y, fx * 0.7, 0.42, 0.05, 0.16)] += 0.9  # Metacarpal.
        density[_ellipse(x, y, 0, 0.85, 0.35, 0.1)] += 0.8  # Carpal bones.
    density = _blur(density, max(rows // 300, 1))
    pixels = 3600 * (1 - np.exp(-1.6 * density)) + 250 + rng.normal(0, 25, density.shape)
    ds = Dataset()
    spacing = 0.15 if series.phantom != "hand" else 0.1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ImagerPixelSpacing = [f"{spacing:g}", f"{spacing:g}"]
    ds.PixelSpacing = ds.ImagerPixelSpacing
    ds.KVP = 110 if series.phantom != "hand" else 55
    ds.ExposureTime = 20
    ds.ViewPosition = {"chest-pa": "PA", "chest-lat": "LL", "hand": "PA"}[series.phantom]
    ds.PatientOrientation = ["L", "F"] if series.phantom != "chest-lat" else ["A", "F"]
    if series.sop_class == DX_IMAGE:
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    ds.PresentationLUTShape = "IDENTITY"
    _mono16(ds, pixels)
    return ds


def _us_cine(series: SeriesPlan, index: int, rng: np.random.Generator) -> Dataset:
    matrix = series.extra["matrix"]
    rows, columns = (matrix * 15 // 16) & ~1, (matrix * 5 // 4) & ~1
    frames = series.extra["frames"]
    x, y = _grid(rows, columns)
    # The fan of a curved array: depth from the apex above the image, +-35 degrees.
    depth = np.hypot(x * columns / rows, y + 1.35)
    angle = np.arctan2(x * columns / rows, y + 1.35)
    fan = (np.abs(angle) < math.radians(35)) & (depth > 0.45) & (depth < 2.25)
    echo = np.where(depth > 0.55, 0.55, 0.9).astype(np.float32)
    echo[_ellipse(x, y, -0.1, 0.05, 0.75, 0.55)] = 0.5  # Liver parenchyma.
    gallbladder = series.description.startswith("GALL")
    cine = np.empty((frames, rows, columns, 3), dtype=np.uint8)
    for frame in range(frames):
        phase = math.sin(2 * math.pi * frame / max(frames, 1))
        tissue = echo.copy()
        dark = _ellipse(
            x,
            y,
            0.1 + 0.03 * phase,
            0.25,
            0.22 if gallbladder else 0.07,
            0.12 if gallbladder else 0.07,
        )
        tissue[dark] = 0.05
        speckle = rng.rayleigh(0.6, tissue.shape).astype(np.float32)
        image = np.clip(_blur(tissue * speckle, 1) * (1.25 - 0.3 * depth) * 255, 0, 255)
        image[~fan] = 0
        rgb = np.repeat(image[..., None], 3, axis=2)
        if not gallbladder:
            # A colour Doppler box over the vessel: red towards the probe, blue away.
            flow = dark & fan
            rgb[flow] = [200, 30, 30] if phase >= 0 else [30, 60, 210]
        cine[frame] = rgb.astype(np.uint8)
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = frames
    ds.FrameTime = "40"
    ds.CineRate = 25
    # (0018,1063) Frame Time is what steps from frame to frame (PS3.3 C.7.6.6.1.1).
    ds.FrameIncrementPointer = 0x00181063
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0 = 0
    region.RegionLocationMinY0 = 0
    region.RegionLocationMaxX1 = columns - 1
    region.RegionLocationMaxY1 = rows - 1
    region.PhysicalUnitsXDirection = 3  # Centimetres.
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = 16 / rows
    region.PhysicalDeltaY = 16 / rows
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    ds.PixelData = cine.tobytes()
    return ds


def _dose_report(series: SeriesPlan, index: int, rng: np.random.Generator) -> Dataset:
    """A CT dose summary page, as scanners export it: an RGB screenshot of text."""
    matrix = series.extra["matrix"]
    width, height = matrix * 5 // 4, matrix
    page = Image.new("RGB", (width, height), (12, 16, 24))
    draw = ImageDraw.Draw(page)
    size = max(height // 26, 8)
    font = ImageFont.load_default(size=size)
    study = series.study
    ctdi = float(rng.uniform(6, 18))
    length = float(rng.uniform(25, 45))
    dlp = ctdi * length
    header = ["Series", "Type", "Scan range", "CTDIvol", "DLP", "Phantom"]
    rows = [
        ["1", "Scout", "-", "-", "-", "-"],
        ["2", "Helical", f"{length:.1f} cm", f"{ctdi:.2f}", f"{dlp:.1f}", "Body 32"],
    ]
    line = int(size * 1.6)
    draw.text((size, size), "Dose Report", fill=(240, 240, 240), font=font)
    draw.text(
        (size, size + line),
        f"Exam date {study.date:%Y-%m-%d}   Accession {study.accession}",
        fill=(180, 190, 200),
        font=font,
    )
    # Fixed column positions, as a table: the default font is proportional.
    columns = [size + int(width * f) for f in (0, 0.13, 0.3, 0.52, 0.68, 0.82)]
    for number, cells in enumerate([header, *rows]):
        colour = (150, 200, 255) if number == 0 else (220, 220, 220)
        for x, text in zip(columns, cells, strict=True):
            draw.text((x, size + (3 + number) * line), text, fill=colour, font=font)
    draw.text(
        (size, size + 7 * line), f"Total DLP: {dlp:.1f} mGy*cm", fill=(255, 210, 120), font=font
    )
    ds = Dataset()
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY", "DOSE_INFO"]
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = height, width
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.asarray(page, dtype=np.uint8).tobytes()
    return ds
