"""A checker for the DICOM JSON model (PS3.18 F.2), used on every DICOMweb answer in the tests."""

import base64
import re

TAG = re.compile(r"^[0-9A-F]{8}$")
VRS = {
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
    "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
    "UR", "US", "UT", "UV",
}  # fmt: skip
NUMBERS = {"FD", "FL", "SL", "SS", "UL", "US"}
NUMBER_OR_TEXT = {"DS", "IS", "SV", "UV"}
BINARY = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
PN_KEYS = {"Alphabetic", "Ideographic", "Phonetic"}


def check_dataset(dataset: dict, where: str = "") -> None:
    assert isinstance(dataset, dict), f"{where}: a dataset is a JSON object"
    keys = list(dataset)
    assert keys == sorted(keys), f"{where}: attributes must be in ascending tag order"
    for key, element in dataset.items():
        at = f"{where}/{key}"
        assert TAG.match(key), f"{at}: keys are 8 upper-case hex digits"
        assert key[4:] != "0000", f"{at}: no group lengths"
        assert isinstance(element, dict) and element.get("vr") in VRS, f"{at}: needs a valid vr"
        vr = element["vr"]
        kinds = [k for k in ("Value", "BulkDataURI", "InlineBinary") if k in element]
        assert len(kinds) <= 1, f"{at}: at most one of Value, BulkDataURI, InlineBinary"
        assert set(element) <= {"vr", "Value", "BulkDataURI", "InlineBinary"}, at
        if "BulkDataURI" in element:
            assert isinstance(element["BulkDataURI"], str) and element["BulkDataURI"], at
        if "InlineBinary" in element:
            assert vr in BINARY, f"{at}: InlineBinary only for binary VRs"
            base64.b64decode(element["InlineBinary"], validate=True)
        if "Value" not in element:
            continue
        values = element["Value"]
        assert isinstance(values, list) and values, f"{at}: Value is a non-empty array"
        for index, value in enumerate(values):
            item = f"{at}[{index}]"
            if vr == "SQ":
                check_dataset(value, item)
            elif vr == "PN":
                assert value is None or (isinstance(value, dict) and set(value) <= PN_KEYS), item
            elif vr in NUMBERS:
                assert value is None or isinstance(value, int | float), f"{item}: a number"
            elif vr in NUMBER_OR_TEXT:
                assert value is None or isinstance(value, int | float | str), item
            elif vr == "AT":
                assert isinstance(value, str) and TAG.match(value), item
            else:
                assert vr not in BINARY, f"{item}: binary values are BulkDataURI or InlineBinary"
                assert value is None or isinstance(value, str), f"{item}: a string"


def check_array(body: list) -> None:
    assert isinstance(body, list), "a DICOMweb JSON answer is an array of datasets"
    for index, dataset in enumerate(body):
        check_dataset(dataset, f"[{index}]")
