"""Reading HL7 v2 text: files into messages, messages into segments, fields and components.

Structure comes from the ``hl7`` package; this module adds what real files need around it:
several messages per file with any line ending, MLLP framing characters and byte order marks
left in the file, batch envelopes (FHS/BHS/BTS/FTS), the character set named in MSH-18, and
escape sequences (HL7 v2.5.1 section 2.7) decoded per component after the split, so that an
escaped separator stays data.
"""

import codecs
import hashlib
import re
from dataclasses import dataclass, field

import hl7
from hl7.exceptions import HL7Exception

# HL7 table 0357 error codes used in ERR segments.
ERR_SEGMENT_SEQUENCE = "100"
ERR_REQUIRED_FIELD_MISSING = "101"
ERR_DATA_TYPE = "102"
ERR_TABLE_VALUE = "103"
ERR_UNSUPPORTED_MESSAGE_TYPE = "200"
ERR_UNSUPPORTED_EVENT = "201"
ERR_UNSUPPORTED_VERSION = "203"
ERR_UNKNOWN_KEY = "204"
ERR_DUPLICATE_KEY = "205"
ERR_INTERNAL = "207"

ERROR_NAMES = {
    ERR_SEGMENT_SEQUENCE: "Segment sequence error",
    ERR_REQUIRED_FIELD_MISSING: "Required field missing",
    ERR_DATA_TYPE: "Data type error",
    ERR_TABLE_VALUE: "Table value not found",
    ERR_UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ERR_UNSUPPORTED_EVENT: "Unsupported event code",
    ERR_UNSUPPORTED_VERSION: "Unsupported version id",
    ERR_UNKNOWN_KEY: "Unknown key identifier",
    ERR_DUPLICATE_KEY: "Duplicate key identifier",
    ERR_INTERNAL: "Application internal error",
}

# Batch and file envelopes (HL7 2.10.3) carry no order data; messages inside them are read alone.
ENVELOPE_SEGMENTS = (b"FHS", b"BHS", b"BTS", b"FTS")

# MSH-18 values (HL7 table 0211) and the Python codec for each. An empty MSH-18 means ASCII,
# which real senders stretch to their local 8-bit code page; see ``decode_message``.
CHARSETS = {
    "ASCII": "",
    "ISO IR6": "",
    "8859/1": "latin-1",
    "ISO IR100": "latin-1",
    "8859/2": "iso8859-2",
    "ISO IR101": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "ISO IR144": "iso8859-5",
    "8859/6": "iso8859-6",
    "ISO IR127": "iso8859-6",
    "8859/7": "iso8859-7",
    "ISO IR126": "iso8859-7",
    "8859/8": "iso8859-8",
    "ISO IR138": "iso8859-8",
    "8859/9": "iso8859-9",
    "ISO IR148": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "ISO IR192": "utf-8",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "BIG-5": "big5",
}
# Tried in order when MSH-18 is empty or ASCII: UTF-8 is unambiguous when it decodes, Windows
# code page 1252 is what most undeclared 8-bit senders use, and Latin-1 decodes any byte.
UNDECLARED_CODECS = ("utf-8", "cp1252", "latin-1")

SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")


class HL7Error(Exception):
    """What is wrong with a message: the segment/field at fault and an HL7 table 0357 code.

    ``reject`` marks errors about the message as a whole (type, version), acknowledged with
    ``AR``; errors in the data are acknowledged with ``AE`` (HL7 table 0008).
    """

    def __init__(
        self, location: str, text: str, code: str = ERR_DATA_TYPE, *, reject: bool = False
    ) -> None:
        self.location = location
        self.text = text
        self.code = code
        self.reject = reject
        super().__init__(f"{location} {text}" if location else text)


@dataclass(frozen=True)
class Chunk:
    """The segments of one message as found in a file, before decoding."""

    position: int
    segments: list[bytes]

    @property
    def size(self) -> int:
        return sum(len(s) + 1 for s in self.segments)


@dataclass(frozen=True)
class SplitFile:
    chunks: list[Chunk]
    # Segments before the first MSH that are not an envelope: not part of any message.
    stray: list[bytes] = field(default_factory=list)


def split_file(data: bytes) -> SplitFile:
    """Cut a file's bytes into messages: every segment that starts with MSH starts one.

    Line endings ``\\r``, ``\\n`` and ``\\r\\n`` all end a segment; MLLP start and end bytes
    (0x0B, 0x1C), byte order marks and blank lines are dropped. A UTF-16 file (with its BOM)
    is converted to UTF-8 first.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        data = data.decode("utf-16").encode("utf-8")
    data = data.replace(b"\x0b", b"").replace(b"\x1c", b"")
    data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    chunks: list[Chunk] = []
    stray: list[bytes] = []
    for line in data.split(b"\r"):
        segment = line.strip(b" \t\f\v")
        if segment.startswith(codecs.BOM_UTF8):
            segment = segment[len(codecs.BOM_UTF8) :].lstrip(b" \t")
        if not segment or segment[:3] in ENVELOPE_SEGMENTS:
            continue
        if segment.startswith(b"MSH"):
            chunks.append(Chunk(position=len(chunks) + 1, segments=[segment]))
        elif chunks:
            chunks[-1].segments.append(segment)
        else:
            stray.append(segment)
    return SplitFile(chunks=chunks, stray=stray)


@dataclass(frozen=True)
class Header:
    """The MSH fields that name a message, read leniently so even a bad message can be named."""

    control_id: str = ""
    message_type: str = ""
    version: str = ""
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    charset: str = ""
    field_separator: str = "|"
    encoding_characters: str = "^~\\&"

    @property
    def label(self) -> str:
        return f"MSH-10 '{self.control_id}'" if self.control_id else "no MSH-10 control ID"


def read_header(msh: bytes) -> Header:
    """Read MSH from its raw bytes (Latin-1 decodes any byte; MSH values are plain ASCII)."""
    text = msh.decode("latin-1")
    if len(text) < 4 or not text.startswith("MSH"):
        return Header()
    separator = text[3]
    fields = text.split(separator)
    encoding = fields[1] if len(fields) > 1 else ""
    component = encoding[:1] or "^"
    repetition = encoding[1:2] or "~"

    def get(number: int) -> str:
        # fields[0] is "MSH" and fields[1] is MSH-2, so MSH-n is fields[n - 1].
        return fields[number - 1].strip() if len(fields) >= number else ""

    def first_component(value: str) -> str:
        return value.split(repetition)[0].split(component)[0].strip()

    def hd(value: str) -> str:
        # HD: namespace ID, universal ID, type; shown joined the way it was sent.
        return value.split(repetition)[0].strip()

    type_parts = get(9).split(component)
    return Header(
        control_id=get(10)[:199],
        message_type="^".join(p.strip() for p in type_parts[:2] if p.strip())[:32],
        version=first_component(get(12))[:16],
        sending_application=hd(get(3))[:227],
        sending_facility=hd(get(4))[:227],
        receiving_application=hd(get(5))[:227],
        receiving_facility=hd(get(6))[:227],
        charset=first_component(get(18)).upper(),
        field_separator=separator,
        encoding_characters=encoding[:4] or "^~\\&",
    )


def decode_message(chunk: Chunk, header: Header) -> tuple[str, str]:
    """Decode a message's bytes by its MSH-18 character set: (text, codec).

    Segments are joined with carriage returns, the HL7 segment terminator.
    """
    raw = b"\r".join(chunk.segments)
    declared = header.charset
    if declared and declared not in CHARSETS:
        raise HL7Error("MSH-18", f"character set '{declared}' is not supported", ERR_TABLE_VALUE)
    codec = CHARSETS.get(declared, "")
    if codec:
        try:
            return raw.decode(codec), codec
        except UnicodeDecodeError as exc:
            raise HL7Error(
                "MSH-18",
                f"says '{declared}' but byte {exc.start + 1} of the message is not valid {declared}",
                ERR_DATA_TYPE,
            ) from exc
    for candidate in UNDECLARED_CODECS:
        try:
            return raw.decode(candidate), candidate
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Repetition:
    """One repetition of a field: components, each a list of subcomponents (decoded text)."""

    def __init__(self, components: list[list[str]]) -> None:
        self.components = components

    def get(self, component: int = 1, sub: int = 1) -> str:
        if component > len(self.components):
            return ""
        subs = self.components[component - 1]
        return subs[sub - 1] if sub <= len(subs) else ""

    def subcomponents(self, component: int) -> list[str]:
        return self.components[component - 1] if component <= len(self.components) else []

    def is_empty(self) -> bool:
        return not any(s for subs in self.components for s in subs)


class Segment:
    """A segment: ``fields[n]`` is field n (for MSH too: ``fields[1]`` is MSH-1, the separator)."""

    def __init__(self, name: str, index: int, fields: list[list[Repetition]]) -> None:
        self.name = name
        self.index = index
        self.fields = fields

    def repetitions(self, number: int) -> list[Repetition]:
        """The non-empty repetitions of field ``number`` (``~``-separated)."""
        if number >= len(self.fields):
            return []
        return [r for r in self.fields[number] if not r.is_empty()]

    def get(self, number: int, component: int = 1, sub: int = 1) -> str:
        """Field ``number``'s first repetition's component (and subcomponent), stripped."""
        reps = self.repetitions(number)
        return reps[0].get(component, sub).strip() if reps else ""


class Message:
    """A parsed message: its segments in order, values decoded from HL7 escapes."""

    def __init__(self, text: str, codec: str) -> None:
        _check_delimiters(text)
        try:
            parsed = hl7.parse(text)
        except (HL7Exception, ValueError, IndexError) as exc:
            raise HL7Error("MSH", f"cannot be parsed ({exc})", ERR_DATA_TYPE) from exc
        msh = parsed[0]
        separators = parsed.separators
        self.escape = parsed.esc
        self._codec = codec
        # Escape sequences for the delimiters (HL7 2.7.1), taken from this message's MSH-1/2.
        self._delimiters = {
            "F": separators[1],
            "R": separators[2],
            "S": separators[3],
            "T": separators[4],
            "E": parsed.esc,
        }
        self.segments: list[Segment] = []
        for index, seg in enumerate(parsed, start=1):
            name = str(seg[0][0]) if seg and seg[0] else ""
            if not SEGMENT_NAME.match(name):
                raise HL7Error(
                    f"segment {index}",
                    f"'{name[:10]}' is not an HL7 segment name",
                    ERR_SEGMENT_SEQUENCE,
                )
            if seg is msh:
                fields = [[], [Repetition([[str(seg[1])]])], [Repetition([[str(seg[2])]])]]
                fields += [self._field(f) for f in seg[3:]]
            else:
                fields = [[]] + [self._field(f) for f in seg[1:]]
            self.segments.append(Segment(name, index, fields))

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def _field(self, node: object) -> list[Repetition]:
        reps = []
        for rep in node if isinstance(node, list) else [node]:
            if isinstance(rep, str):
                reps.append(Repetition([[self._leaf(rep)]]))
                continue
            components = []
            for comp in rep:
                subs = [comp] if isinstance(comp, str) else list(comp)
                components.append([self._leaf(str(s)) for s in subs])
            reps.append(Repetition(components))
        return reps

    def _leaf(self, raw: str) -> str:
        # Two double quotes are HL7's explicit null (2.5.3): "no value", not the text '""'.
        if raw == '""':
            return ""
        return unescape(raw, escape=self.escape, delimiters=self._delimiters, codec=self._codec)


def _check_delimiters(text: str) -> None:
    """MSH-1 and MSH-2 must be five distinct delimiters (HL7 2.5.4): field, component,
    repetition, escape, subcomponent; v2.7's truncation character may follow."""
    field_separator = text[3:4]
    if not field_separator or field_separator.isalnum() or field_separator.isspace():
        raise HL7Error(
            "MSH-1", f"field separator '{field_separator}' is not a delimiter", ERR_DATA_TYPE
        )
    encoding = text[4:].split(field_separator, 1)[0]
    delimiters = field_separator + encoding
    if (
        len(encoding) not in (4, 5)
        or len(set(delimiters)) != len(delimiters)
        or any(c.isalnum() or c.isspace() for c in delimiters)
    ):
        raise HL7Error(
            "MSH-2",
            f"encoding characters '{encoding[:10]}' are not four distinct delimiters such as ^~\\&",
            ERR_DATA_TYPE,
        )


def unescape(text: str, *, escape: str, delimiters: dict[str, str], codec: str) -> str:
    """Decode HL7 escape sequences (HL7 v2.5.1 2.7): delimiters, hex data, formatting.

    ``\\Xhh..\\`` is bytes in the message's character set. Highlighting (``\\H\\``, ``\\N\\``)
    has no place in DICOM text and is dropped; line breaks become line feeds. Anything not
    understood (character set switches, local ``\\Z..\\`` sequences, an unterminated escape)
    is kept as it was written, so nothing is silently lost.
    """
    if escape not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        end = text.find(escape, i + 1) if char == escape else -1
        if end < 0:
            out.append(char)
            i += 1
            continue
        code = text[i + 1 : end]
        decoded = _escape_value(code, delimiters, codec)
        out.append(text[i : end + 1] if decoded is None else decoded)
        i = end + 1
    return "".join(out)


def _escape_value(code: str, delimiters: dict[str, str], codec: str) -> str | None:
    if code in delimiters:
        return delimiters[code]
    if code in ("H", "N"):
        return ""
    if code == ".br" or code.startswith(".sp"):
        return "\n"
    if code.startswith((".in", ".ti", ".sk", ".fi", ".nf", ".ce")):
        return " " if code.startswith((".in", ".ti", ".sk")) else ""
    if code.startswith("X") and len(code) > 1 and len(code) % 2 == 1:
        try:
            data = bytes.fromhex(code[1:])
        except ValueError:
            return None
        try:
            return data.decode(codec or "utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    return None
