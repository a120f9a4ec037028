"""The files inside what an operator or a web user hands in: files, folders, zips and CD copies.

``FileSources(paths)`` walks files and folders (recursively), opens zips found anywhere (by their
magic number, not their name; zips inside zips too) and yields one ``Entry`` per candidate file,
already sniffed: DICOM, an HL7 message file, something else (skipped), a CD's ``DICOMDIR`` index
(skipped: the images it lists are read from their own files), or a problem with its reason.
``entries_of_file`` does the same for one already-open file, such as a web upload.

Zips are untrusted. Before anything in a zip is handed out, the whole zip (with every zip nested
in it) is read once and the bytes that actually come out are counted against three bounds shared
by the whole tree: ``ZIP_MAX_MEMBERS`` files, ``ZIP_MAX_TOTAL_BYTES`` unpacked bytes, and
``ZIP_MAX_RATIO`` times the size of the outermost zip. Reading stops at the bound, whatever the
headers claim, so a zip bomb or a zip with lying size fields is refused as a whole and nothing in
it is stored. Members are unpacked into anonymous temporary files: no path is ever built from a
member's name, which is only shown to people.
"""

import copy
import os
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

CHUNK = 1024 * 1024
# How much of a file is read to tell what it is; a DICOM preamble and magic need 132 bytes.
HEAD_BYTES = 1024
# Zip members up to this size are unpacked in memory, larger ones into a temporary file.
SPOOL_IN_MEMORY = 8 * 1024 * 1024
# Unpacking this much never counts as a bomb, whatever the ratio: a 2 KB zip of a 200 KB text
# file is harmless, and small zips of blank images compress extremely well.
RATIO_FLOOR = 1024 * 1024
# A zip inside a zip inside a zip is the deepest a real delivery goes; bombs such as 42.zip nest
# deeper to multiply their size.
MAX_NESTING = 3
DICOMDIR_NAME = "DICOMDIR"

_BOM = b"\xef\xbb\xbf"
# The value representations of PS3.5 6.2, to recognise explicit VR data without a preamble.
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)


class FileType(StrEnum):
    ZIP = "zip"
    DICOM = "dicom"
    HL7 = "hl7"
    OTHER = "other"


class Kind(StrEnum):
    """What an entry is, and so what the caller does with it."""

    DICOM = "dicom"  # ``file`` is open: ingest it.
    HL7 = "hl7"  # ``file`` is open: HL7 v2 messages for the worklist.
    NOT_DICOM = "not-dicom"  # Skipped: the reason says what it looked like.
    DICOMDIR = "dicomdir"  # Skipped: a CD's index, not an image.
    REJECTED = "rejected"  # This one file could not be read; the reason says why.
    ZIP_REFUSED = "zip-refused"  # A whole zip was refused (a bomb, or not a readable zip).


@dataclass
class Entry:
    """One candidate file. ``file`` is open and seekable until the next entry is requested."""

    label: str
    kind: Kind
    file: BinaryIO | None = None
    reason: str = ""


def sniff(head: bytes) -> FileType:
    """Tell a file's type from its first bytes (``HEAD_BYTES`` is enough)."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return FileType.ZIP
    if head[128:132] == b"DICM":
        return FileType.DICOM
    if head.removeprefix(_BOM).lstrip().startswith(b"MSH|"):
        return FileType.HL7
    if _looks_like_bare_dataset(head):
        return FileType.DICOM
    return FileType.OTHER


def _looks_like_bare_dataset(head: bytes) -> bool:
    """A dataset written without preamble and magic (older software, PS3.10 7.1 aside).

    Such data starts with an element of the file meta group (0002) or of the identifying group
    (0008), followed by either a valid explicit VR or a plausible implicit VR length.
    """
    if len(head) < 8:
        return False
    for order in ("little", "big"):
        if int.from_bytes(head[0:2], order) in (0x0002, 0x0008):
            if head[4:6] in _VRS or int.from_bytes(head[4:8], order) < HEAD_BYTES:
                return True
    return False


def printable(text: str, limit: int = 300) -> str:
    """A name from a file system, zip or browser, safe to print on one terminal line."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class ZipRefused(Exception):
    """The zip as a whole is refused; the message says why, for a person."""


class _DamagedMember(Exception):
    """One member cannot be unpacked (bad CRC, truncated, encrypted, unknown compression)."""


class _Budget:
    """The bounds one outermost zip and everything nested in it share."""

    def __init__(self, outer_size: int) -> None:
        self.max_members = settings.ZIP_MAX_MEMBERS
        self.max_total = settings.ZIP_MAX_TOTAL_BYTES
        self.ratio = settings.ZIP_MAX_RATIO
        self.max_by_ratio = max(self.ratio * outer_size, RATIO_FLOOR)
        self.members = 0
        self.total = 0

    @property
    def remaining(self) -> int:
        return min(self.max_total, self.max_by_ratio) - self.total

    def check_declared(self, infos: list[zipfile.ZipInfo]) -> None:
        """Refuse at once what the headers admit to; the reading that follows catches liars."""
        files = [info for info in infos if not info.is_dir()]
        if self.members + len(files) > self.max_members:
            raise ZipRefused(f"it holds more than {self.max_members:,} files")
        self._check(self.total + sum(info.file_size for info in files))

    def add_member(self) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise ZipRefused(f"it holds more than {self.max_members:,} files")

    def add_bytes(self, n: int) -> None:
        self.total += n
        self._check(self.total)

    def _check(self, total: int) -> None:
        if total > self.max_total:
            raise ZipRefused(f"it unpacks to more than {_size(self.max_total)}")
        if total > self.max_by_ratio:
            raise ZipRefused(
                f"it unpacks to more than {self.ratio} times its own size, as zip bombs do"
            )


def _refusal(reason: str) -> str:
    return f"zip refused: {reason}; nothing in it was imported"


class FileSources:
    """Iterate the entries of ``paths``; ``bytes_total``/``bytes_done`` measure the progress.

    Progress counts bytes of the inputs as they lie on disk: a plain file counts when it is
    handed out, a zip's members by their compressed size as they are handed out.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        self.bytes_done = 0
        self._bytes_total: int | None = None

    @property
    def bytes_total(self) -> int:
        """The size of every regular file under the paths (walked once, nothing opened)."""
        if self._bytes_total is None:
            total = 0
            for path in self.paths:
                for _label, file_path in _walk(path, errors=None):
                    try:
                        total += file_path.stat().st_size
                    except OSError:
                        continue
            self._bytes_total = total
        return self._bytes_total

    def __iter__(self) -> Iterator[Entry]:
        for path in self.paths:
            if not os.path.lexists(path):
                yield Entry(printable(str(path)), Kind.REJECTED, reason="does not exist")
                continue
            if path.is_file() and path.name.upper() == DICOMDIR_NAME:
                # Given a CD's index itself, read the whole CD copy it indexes.
                path = path.parent
            errors: list[Entry] = []
            for label, file_path in _walk(path, errors=errors):
                yield from errors
                errors.clear()
                yield from self._entries_of_path(label, file_path)
            yield from errors

    def _entries_of_path(self, label: str, file_path: Path) -> Iterator[Entry]:
        base = self.bytes_done
        try:
            fp = open(file_path, "rb")  # noqa: SIM115 - closed by the with block just below.
        except OSError as exc:
            yield Entry(label, Kind.REJECTED, reason=f"cannot read the file ({exc.strerror})")
            return
        with fp:
            size = os.fstat(fp.fileno()).st_size

            def progress(offset: int) -> None:
                self.bytes_done = base + min(offset, size)

            yield from entries_of_file(fp, label, file_path.name, on_progress=progress)
        self.bytes_done = base + size


def _walk(path: Path, errors: list[Entry] | None) -> Iterator[tuple[str, Path]]:
    """Regular files under ``path`` (or ``path`` itself), in a stable order.

    Symbolic links to files are followed, links to folders are not (they can loop). Folders that
    cannot be listed and special files (devices, pipes) become entries in ``errors``.
    """
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if errors is not None:
            errors.append(
                Entry(printable(str(path)), Kind.REJECTED, reason=f"cannot read ({exc.strerror})")
            )
        return
    if stat.S_ISREG(mode):
        yield printable(str(path)), path
        return
    if not stat.S_ISDIR(mode):
        if errors is not None:
            errors.append(
                Entry(printable(str(path)), Kind.REJECTED, reason="not a file or a folder")
            )
        return
    stack = [path]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as scan:
                items = sorted(scan, key=lambda item: item.name)
        except OSError as exc:
            if errors is not None:
                errors.append(
                    Entry(
                        printable(str(folder)),
                        Kind.REJECTED,
                        reason=f"cannot list the folder ({exc.strerror})",
                    )
                )
            continue
        subfolders = []
        for item in items:
            try:
                if item.is_dir(follow_symlinks=False):
                    subfolders.append(Path(item.path))
                elif item.is_file():
                    yield printable(item.path), Path(item.path)
            except OSError:
                continue
        # Depth first, in name order: the stack pops the first subfolder next.
        stack.extend(reversed(subfolders))


def entries_of_file(
    fp: BinaryIO,
    label: str,
    name: str,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[Entry]:
    """The entries of one open, seekable file called ``name`` (a zip gives its members)."""
    if name.upper() == DICOMDIR_NAME:
        yield _dicomdir_entry(label)
        return
    try:
        fp.seek(0)
        head = fp.read(HEAD_BYTES)
        fp.seek(0)
    except OSError as exc:
        yield Entry(label, Kind.REJECTED, reason=f"cannot read the file ({exc.strerror})")
        return
    file_type = sniff(head)
    if file_type == FileType.ZIP:
        fp.seek(0, os.SEEK_END)
        size = fp.tell()
        fp.seek(0)
        yield from _ZipReader(fp, label, size, on_progress).entries()
    else:
        yield _plain_entry(label, file_type, head, fp)


def _dicomdir_entry(label: str) -> Entry:
    return Entry(
        label,
        Kind.DICOMDIR,
        reason="the CD's index (DICOMDIR), not an image; the images it lists are read from "
        "their own files",
    )


def _plain_entry(label: str, file_type: FileType, head: bytes, fp: BinaryIO) -> Entry:
    if file_type == FileType.DICOM:
        return Entry(label, Kind.DICOM, fp)
    if file_type == FileType.HL7:
        return Entry(label, Kind.HL7, fp)
    what = "an empty file" if not head else "not a DICOM file, a zip or an HL7 message"
    return Entry(label, Kind.NOT_DICOM, reason=what)


class _ZipReader:
    """Reads one outermost zip in two passes: check everything, then hand members out."""

    def __init__(
        self,
        fp: BinaryIO,
        label: str,
        size: int,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        self.fp = fp
        self.label = label
        self.size = size
        self.on_progress = on_progress
        # Zips found inside the zip during the check, unpacked once and kept for the second pass,
        # keyed by their member positions from the outermost zip down.
        self.nested: dict[tuple[int, ...], BinaryIO] = {}

    def entries(self) -> Iterator[Entry]:
        with ExitStack() as spools:
            try:
                for _ in self._members(self.fp, self.label, _Budget(self.size), (), spools, False):
                    pass
            except ZipRefused as exc:
                yield Entry(self.label, Kind.ZIP_REFUSED, reason=_refusal(str(exc)))
                return
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
                yield Entry(
                    self.label,
                    Kind.ZIP_REFUSED,
                    reason=f"zip refused: it is damaged or truncated ({exc})",
                )
                return
            try:
                yield from self._members(self.fp, self.label, _Budget(self.size), (), spools, True)
            except ZipRefused as exc:
                # Only if the zip changed between the two passes.
                yield Entry(self.label, Kind.ZIP_REFUSED, reason=f"zip refused: {exc}")

    def _members(
        self,
        fp: BinaryIO,
        label: str,
        budget: _Budget,
        key: tuple[int, ...],
        spools: ExitStack,
        emit: bool,
    ) -> Iterator[Entry]:
        """Walk one zip's members; with ``emit`` False only check and keep nested zips."""
        with zipfile.ZipFile(fp) as zf:
            infos = zf.infolist()
            budget.check_declared(infos)
            for index, info in enumerate(infos):
                if info.is_dir():
                    continue
                budget.add_member()
                member_key = key + (index,)
                member_label = f"{label}/{printable(info.filename)}"
                if emit and not key and self.on_progress is not None:
                    self.on_progress(info.header_offset + info.compress_size)
                if member_key in self.nested:
                    yield from self._nested(member_label, budget, member_key, spools, emit)
                    continue
                if _member_basename(info.filename).upper() == DICOMDIR_NAME:
                    if emit:
                        yield _dicomdir_entry(member_label)
                    continue
                if emit:
                    yield from self._emit_member(zf, info, member_label, budget, member_key, spools)
                else:
                    self._check_member(zf, info, budget, member_key, spools)

    def _check_member(
        self,
        zf: zipfile.ZipFile,
        info: zipfile.ZipInfo,
        budget: _Budget,
        key: tuple[int, ...],
        spools: ExitStack,
    ) -> None:
        def keep_if_zip(head: bytes) -> BinaryIO | None:
            if sniff(head) != FileType.ZIP:
                return None
            if len(key) > MAX_NESTING:
                raise ZipRefused(f"it holds zips nested more than {MAX_NESTING} deep")
            return spools.enter_context(tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR))

        try:
            spool = _unpack(zf, info, budget, keep_if_zip)
        except _DamagedMember:
            # The second pass reports it as a rejected member; the rest of the zip is fine.
            return
        if spool is None:
            return
        # A nested zip is checked now, within the same budget, so that the second pass hands
        # out nothing if anything anywhere in the tree is refused.
        try:
            for _ in self._members(spool, "", budget, key, spools, False):
                pass
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError):
            # Not readable as a zip: the second pass unpacks it again and rejects that member.
            return
        self.nested[key] = spool

    def _nested(
        self,
        label: str,
        budget: _Budget,
        key: tuple[int, ...],
        spools: ExitStack,
        emit: bool,
    ) -> Iterator[Entry]:
        spool = self.nested[key]
        try:
            yield from self._members(spool, label, budget, key, spools, emit)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
            if emit:
                yield Entry(label, Kind.REJECTED, reason=f"not a readable zip ({exc})")

    def _emit_member(
        self,
        zf: zipfile.ZipFile,
        info: zipfile.ZipInfo,
        label: str,
        budget: _Budget,
        key: tuple[int, ...],
        spools: ExitStack,
    ) -> Iterator[Entry]:
        def spool_always(_head: bytes) -> BinaryIO:
            return tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by the caller.
                max_size=SPOOL_IN_MEMORY, dir=settings.FILE_UPLOAD_TEMP_DIR
            )

        try:
            spool = _unpack(zf, info, budget, spool_always)
        except _DamagedMember as exc:
            yield Entry(label, Kind.REJECTED, reason=f"damaged in the zip ({exc})")
            return
        assert spool is not None
        with spool:
            spool.seek(0)
            head = spool.read(HEAD_BYTES)
            spool.seek(0)
            file_type = sniff(head)
            if file_type == FileType.ZIP:
                # Only reached when the first pass found this zip unreadable.
                yield Entry(label, Kind.REJECTED, reason="not a readable zip")
                return
            yield _plain_entry(label, file_type, head, spool)


def _member_basename(member_name: str) -> str:
    """The last part of a zip member's name (zip names use ``/``; some tools write ``\\``)."""
    return member_name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _unpack(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    budget: _Budget,
    open_output: Callable[[bytes], BinaryIO | None],
) -> BinaryIO | None:
    """Unpack one member, counting the bytes that really come out; return the output file.

    ``open_output`` sees the first chunk and returns where to write the member (or None to only
    count it). zipfile trusts the declared size and stops there, so it is given the budget's
    remaining room instead (plus one byte, to notice going past it); the declared size and CRC
    are then checked here against what came out.
    """
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # zipfile inflates bzip2 and LZMA data without an output bound, so one read could
        # fill memory; DICOM zips are stored or deflated.
        raise _DamagedMember(
            f"compressed with a method pacsweb does not read ({info.compress_type})"
        )
    probe = copy.copy(info)
    probe.file_size = max(budget.remaining, 0) + 1
    del probe.CRC
    out: BinaryIO | None = None
    count = crc = 0
    try:
        with zf.open(probe) as member:
            first = True
            while True:
                chunk = member.read(CHUNK)
                if not chunk and not first:
                    break
                count += len(chunk)
                if count > info.file_size:
                    raise ZipRefused(
                        f"{printable(info.filename, 80)} holds more than its header says "
                        f"({info.file_size:,} bytes), as zip bombs do"
                    )
                budget.add_bytes(len(chunk))
                crc = zlib.crc32(chunk, crc)
                if first:
                    out = open_output(chunk[:HEAD_BYTES])
                    first = False
                if out is not None:
                    out.write(chunk)
                if not chunk:
                    break
    except ZipRefused:
        if out is not None:
            out.close()
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        if out is not None:
            out.close()
        raise _DamagedMember(str(exc) or type(exc).__name__) from exc
    except OSError as exc:
        if out is not None:
            out.close()
        raise _DamagedMember(f"cannot be read: {exc.strerror or exc}") from exc
    if count != info.file_size or crc != info.CRC:
        if out is not None:
            out.close()
        raise _DamagedMember("its content does not match its checksum")
    return out
