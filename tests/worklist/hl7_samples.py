"""HL7 v2 messages shaped like those of three order fillers, built field by field.

Fields are given by number, so a sample cannot be off by one pipe; ``text()`` gives the message
exactly as it travels (segments ending in a carriage return).

- RADIS: an IHE-conformant RIS, ORM^O01 v2.3.1, ISO 8859/1, accession in OBR-18, Study Instance
  UID in the IHE ZDS segment, station AE title in ORC-18, alternate code for the protocol, NTE.
- MEDRIS: an older RIS, ORM^O01 v2.3, no MSH-18 (sends UTF-8 anyway), the filler order number is
  the accession, start time only in OBR-36, no AE title, a local ZPI segment, name aliases.
- OFILL: an order filler sending OMI^O23 v2.5.1 in UTF-8 with TQ1 and IPC, and a patient name
  in alphabetic, ideographic and phonetic forms.
"""

from collections.abc import Iterable

Segment = tuple[str, dict[int, str]]


def segment_text(name: str, values: dict[int, str]) -> str:
    if name == "MSH":
        last = max(values, default=2)
        return "MSH|^~\\&|" + "|".join(values.get(i, "") for i in range(3, last + 1))
    last = max(values, default=0)
    return "|".join([name, *(values.get(i, "") for i in range(1, last + 1))])


def text(segments: Iterable[Segment], ending: str = "\r") -> str:
    return "".join(segment_text(name, values) + ending for name, values in segments)


def changed(segments: list[Segment], name: str, number: int, value: str | None) -> list[Segment]:
    """A copy with field ``number`` of the first ``name`` segment set (None removes the field)."""
    out = []
    done = False
    for seg_name, values in segments:
        values = dict(values)
        if seg_name == name and not done:
            if value is None:
                values.pop(number, None)
            else:
                values[number] = value
            done = True
        out.append((seg_name, values))
    assert done, f"no {name} segment"
    return out


def without(segments: list[Segment], name: str) -> list[Segment]:
    return [s for s in segments if s[0] != name]


def radis_orm(
    control_id: str = "RADIS000101",
    order_control: str = "NW",
    placer: str = "PLC1001",
    filler: str = "FIL1001",
    accession: str = "ACC1001",
    start: str = "20240320093000",
    station: str = "CT01^CT Room 1",
) -> list[Segment]:
    physician = "1234^WELBY^MARCUS^^^DR"
    timing = f"^^^{start}^^R"
    return [
        (
            "MSH",
            {
                3: "RADIS",
                4: "RADIOLOGY",
                5: "PACSWEB",
                6: "CLINIC",
                7: "20240315083000",
                9: "ORM^O01",
                10: control_id,
                11: "P",
                12: "2.3.1",
                18: "8859/1",
            },
        ),
        (
            "PID",
            {
                1: "1",
                3: "PAT1001^^^HOSP^MR~998877^^^NATION^SS",
                5: "Müller^Hans^Peter^^Dr.",
                7: "19650412",
                8: "M",
                11: "Hauptstr. 1^^Berlin^^10115^DE",
            },
        ),
        (
            "PV1",
            {
                1: "1",
                2: "O",
                3: "RAD^^^RADIOLOGY",
                7: physician,
                8: "5678^HOUSE^GREGORY^^^DR",
                19: "V0001^^^HOSP",
            },
        ),
        (
            "ORC",
            {
                1: order_control,
                2: f"{placer}^HIS",
                3: f"{filler}^RADIS",
                5: "SC",
                7: timing,
                9: "20240315083000",
                12: physician,
                17: "RAD^Radiology",
                18: station,
            },
        ),
        (
            "OBR",
            {
                1: "1",
                2: f"{placer}^HIS",
                3: f"{filler}^RADIS",
                4: "CTHD^CT Head\\T\\Neck^LOCAL^P-CTHN^CT head \\T\\ neck plain^LOCAL",
                13: "Contrast allergy",
                16: physician,
                18: accession,
                19: f"RP{accession[3:]}",
                20: f"SPS{accession[3:]}",
                24: "CT",
                27: timing,
                34: "TECH1&SMITH&ANNA",
                44: "CTHDN^CT Head and Neck^LOCAL",
            },
        ),
        ("NTE", {1: "1", 3: "Patient is claustrophobic"}),
        ("ZDS", {1: f"1.2.840.113619.2.55.3.{accession[3:]}^RADIS^Application^DICOM"}),
    ]


def medris_orm(
    control_id: str = "20240316101500001",
    order_control: str = "NW",
    placer: str = "55001",
    filler: str = "RAD55001",
    start: str = "20240316110000",
) -> list[Segment]:
    return [
        (
            "MSH",
            {
                3: "MEDRIS",
                4: "IMAGING",
                5: "PACS",
                7: "20240316101500",
                9: "ORM^O01",
                10: control_id,
                11: "P",
                12: "2.3",
            },
        ),
        (
            "PID",
            {
                3: "556677",
                5: "O'NEIL^ZOË^ANN~SMITH^ZOË^^^^^M",
                7: "19800229",
                8: "F",
                13: "555-1234~555-9876",
            },
        ),
        ("ZPI", {1: "VIP", 2: "N"}),
        ("PV1", {2: "O", 8: "^DOE^JANE"}),
        ("ORC", {1: order_control, 2: placer, 3: filler, 12: "^DOE^JANE"}),
        (
            "OBR",
            {
                1: "1",
                2: placer,
                3: filler,
                4: "XR-CHEST^XR Chest PA\\S\\LAT",
                5: "S",
                16: "^DOE^JANE",
                24: "CR",
                36: start,
            },
        ),
    ]


def ofill_omi(control_id: str = "OF-2024-0001", order_control: str = "NW") -> list[Segment]:
    physician = "D100^NAKAMURA^KEN^^^DR"
    return [
        (
            "MSH",
            {
                3: "ORDERFILLER^1.2.3.4^ISO",
                4: "HOSPITAL",
                5: "PACSWEB",
                7: "20240320120000+0900",
                9: "OMI^O23^OMI_O23",
                10: control_id,
                11: "P",
                12: "2.5.1",
                18: "UNICODE UTF-8",
            },
        ),
        (
            "PID",
            {
                1: "1",
                3: "77001^^^HOSP&1.2.3&ISO^PI",
                5: "山田^太郎^^^^^L^I~YAMADA^TARO^^^^^L^A~やまだ^たろう^^^^^L^P",
                7: "197003150000",
                8: "M",
            },
        ),
        ("PV1", {1: "1", 2: "I", 8: "D200^M\\XC39C\\LLER^ANNA^^^DR", 19: "ADM7001"}),
        (
            "ORC",
            {
                1: order_control,
                2: "PO7001^ORDERPLACER",
                3: "FO7001^ORDERFILLER",
                5: "SC",
                12: physician,
            },
        ),
        ("TQ1", {1: "1", 7: "20240321143000+0900", 9: "A^ASAP^HL70485"}),
        (
            "OBR",
            {
                1: "1",
                2: "PO7001^ORDERPLACER",
                3: "FO7001^ORDERFILLER",
                4: "MRBR^MR Brain with contrast^99RAD",
                16: physician,
                24: "MR",
                44: "MRBR^MR Brain\\E\\Stem^99RAD",
            },
        ),
        (
            "IPC",
            {
                1: "ACC7001",
                2: "RP7001",
                3: "1.2.392.200036.9116.2.6.1.48.1214833767.1206425789.123456",
                4: "SPS7001",
                5: "MR",
                6: "PROT-BR^Brain routine^99RAD",
                7: "MRSTATION1",
                8: "MR-ROOM-2",
                9: "MR_AE_01",
            },
        ),
    ]


def adt_a08(
    control_id: str = "ADT0001", patient_id: str = "PAT1001", name: str = "Müller-Lüdenscheidt^Hans"
) -> list[Segment]:
    return [
        (
            "MSH",
            {
                3: "RADIS",
                4: "RADIOLOGY",
                7: "20240316090000",
                9: "ADT^A08^ADT_A01",
                10: control_id,
                11: "P",
                12: "2.4",
                18: "8859/1",
            },
        ),
        ("EVN", {1: "A08", 2: "20240316090000"}),
        ("PID", {1: "1", 3: f"{patient_id}^^^HOSP^MR", 5: name, 7: "19650413", 8: "M"}),
        ("PV1", {1: "1", 2: "O"}),
    ]
