"""worklist.hl7_reader: splitting files, reading headers, escape sequences, fields."""

import pytest

from worklist.hl7_reader import HL7Error, Message, read_header, split_file, unescape

DELIMITERS = {"F": "|", "R": "~", "S": "^", "T": "&", "E": "\\"}


def decode(text: str, codec: str = "utf-8") -> str:
    return unescape(text, escape="\\", delimiters=DELIMITERS, codec=codec)


@pytest.mark.parametrize(
    ("escaped", "plain"),
    [
        ("A\\F\\B", "A|B"),
        ("A\\S\\B", "A^B"),
        ("A\\T\\B", "A&B"),
        ("A\\R\\B", "A~B"),
        ("C:\\E\\temp", "C:\\temp"),
        ("\\X41\\\\X42\\", "AB"),
        ("M\\XC3BC\\ller", "Müller"),
        ("\\H\\bold\\N\\ text", "bold text"),
        ("line one\\.br\\line two", "line one\nline two"),
        ("keep \\Zlocal\\ sequences", "keep \\Zlocal\\ sequences"),
        ("unterminated \\S", "unterminated \\S"),
        ("odd hex \\X4\\ kept", "odd hex \\X4\\ kept"),
        ("no escapes", "no escapes"),
    ],
)
def test_escape_sequences(escaped, plain):
    assert decode(escaped) == plain


def test_hex_escape_uses_the_message_character_set():
    assert decode("M\\XFC\\ller", codec="latin-1") == "Müller"
    # Bytes that are not valid in the declared set are read as Latin-1 rather than dropped.
    assert decode("M\\XFC\\ller", codec="utf-8") == "Müller"


def test_escaped_delimiters_stay_inside_their_component():
    message = Message(
        "MSH|^~\\&|A|B|C|D|20240101||ORM^O01|1|P|2.3\rOBR|1|||X^Head\\S\\Neck\\T\\Face^L", "utf-8"
    )
    obr = message.first("OBR")
    assert obr.get(4, 2) == "Head^Neck&Face"
    assert obr.get(4, 3) == "L"


def test_message_uses_its_own_encoding_characters():
    message = Message("MSH#*$!@#A#B#C#D#20240101##ORM*O01#1#P#2.3\rPID#1##X*Y$Z!S!*W", "utf-8")
    pid = message.first("PID")
    first, second = pid.repetitions(3)
    assert (first.get(1), first.get(2)) == ("X", "Y")
    assert (second.get(1), second.get(2)) == ("Z*", "W")


def test_repetitions_skip_empty_ones_and_null_is_empty():
    message = Message('MSH|^~\\&|A|B|C|D|20240101||ORM^O01|1|P|2.3\rPID|1||~A^^^H~~B|""', "utf-8")
    pid = message.first("PID")
    assert [r.get(1) for r in pid.repetitions(3)] == ["A", "B"]
    assert pid.get(4) == ""


def test_msh_field_numbers_count_the_separator_as_msh_1():
    message = Message("MSH|^~\\&|APP|FAC|PACS|CLINIC|20240101||ORM^O01|CTRL1|P|2.3.1", "utf-8")
    msh = message.segments[0]
    assert (msh.get(1), msh.get(2), msh.get(3), msh.get(10), msh.get(12)) == (
        "|",
        "^~\\&",
        "APP",
        "CTRL1",
        "2.3.1",
    )


def test_bad_segment_name_is_an_error():
    with pytest.raises(HL7Error, match="segment 2 'pid' is not an HL7 segment name") as caught:
        Message("MSH|^~\\&|A|B|C|D|20240101||ORM^O01|1|P|2.3\rpid|1", "utf-8")
    assert caught.value.location == "segment 2"


def test_split_file_handles_every_line_ending_framing_and_bom():
    data = (
        b"\xef\xbb\xbfMSH|^~\\&|A|||||||1|P|2.3\r\nPID|1\r\n\r\n"
        b"\x0bMSH|^~\\&|A|||||||2|P|2.3\rPID|2\x1c\r"
        b"MSH|^~\\&|A|||||||3|P|2.3\nPID|3\n  \n"
    )
    split = split_file(data)
    assert [c.position for c in split.chunks] == [1, 2, 3]
    assert [c.segments[1] for c in split.chunks] == [b"PID|1", b"PID|2", b"PID|3"]
    assert split.stray == []


def test_split_file_reads_utf16_with_bom():
    text = "MSH|^~\\&|A|||||||1|P|2.3\rPID|1||X||Zoë\r"
    split = split_file(text.encode("utf-16"))
    assert split.chunks[0].segments[1].decode("utf-8") == "PID|1||X||Zoë"


def test_read_header_is_lenient():
    header = read_header(
        b"MSH|^~\\&|RIS^1.2^ISO|FAC|PACS|CLIN|2024||ORM^O01^ORM_O01|C1|P|2.5.1~x||||||unicode utf-8"
    )
    assert header.control_id == "C1"
    assert header.message_type == "ORM^O01"
    assert header.version == "2.5.1"
    assert header.sending_application == "RIS^1.2^ISO"
    assert header.charset == "UNICODE UTF-8"
    assert read_header(b"MSH").control_id == ""
