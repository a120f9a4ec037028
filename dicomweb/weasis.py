"""Weasis manifests (schema 2.5): the instances of some studies or series, with a WADO-URI base.

Weasis fetches the manifest and then every instance itself, without the browser's cookies, so
both URLs carry the short-lived credential of ``dicomweb.access.weasis_credential``.
"""

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from urllib.parse import quote

from studies.models import Instance

NAMESPACE = "http://www.weasis.org/xsd/2.5"
# Characters XML 1.0 cannot carry (PS3.5 text may hold control characters).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
SEXES = {"M", "F", "O"}


def _clean(value: object) -> str:
    return _NOT_XML.sub("", "" if value is None else str(value))


def _attrs(element: ET.Element, **values: object) -> None:
    for name, value in values.items():
        text = _clean(value)
        if text:
            element.set(name, text)


def manifest_xml(instances: Iterable[Instance], *, wado_url: str, credential: str) -> bytes:
    """The manifest for ``instances`` (with series, study and patient selected, in order)."""
    root = ET.Element("manifest", xmlns=NAMESPACE)
    query = ET.SubElement(
        root,
        "arcQuery",
        arcId="pacsweb",
        baseUrl=wado_url,
        requireOnlySOPInstanceUID="false",
        # Weasis appends this verbatim to each WADO-URI query; the spelling is Weasis's own.
        additionnalParameters="&credential=" + quote(credential, safe=""),
    )
    patients: dict[int, ET.Element] = {}
    studies: dict[int, ET.Element] = {}
    series_elements: dict[int, ET.Element] = {}
    for instance in instances:
        series = instance.series
        study = series.study
        patient = study.patient
        if patient.pk not in patients:
            element = ET.SubElement(
                query,
                "Patient",
                PatientID=_clean(patient.patient_id),
                PatientName=_clean(patient.name),
            )
            _attrs(
                element,
                IssuerOfPatientID=patient.issuer,
                PatientBirthDate=patient.birth_date.strftime("%Y%m%d")
                if patient.birth_date
                else "",
                PatientSex=patient.sex if patient.sex in SEXES else "",
            )
            patients[patient.pk] = element
        if study.pk not in studies:
            element = ET.SubElement(patients[patient.pk], "Study", StudyInstanceUID=study.study_uid)
            _attrs(
                element,
                StudyDescription=study.description,
                StudyDate=study.study_date.strftime("%Y%m%d") if study.study_date else "",
                StudyTime=study.study_time,
                AccessionNumber=study.accession_number,
                StudyID=study.study_id,
                ReferringPhysicianName=study.referring_physician,
            )
            studies[study.pk] = element
        if series.pk not in series_elements:
            element = ET.SubElement(
                studies[study.pk], "Series", SeriesInstanceUID=series.series_uid
            )
            _attrs(
                element,
                SeriesDescription=series.description,
                SeriesNumber=series.series_number,
                Modality=series.modality,
            )
            series_elements[series.pk] = element
        element = ET.SubElement(
            series_elements[series.pk], "Instance", SOPInstanceUID=instance.sop_uid
        )
        _attrs(element, InstanceNumber=instance.instance_number, SOPClassUID=instance.sop_class_uid)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def launch_url(manifest_url: str) -> str:
    """The ``weasis://`` link: Weasis splits its URI on ``$``, then runs ``dicom:get -w``."""
    return "weasis://?" + quote(f'$dicom:get -w "{manifest_url}"', safe="")
