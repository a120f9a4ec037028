"""Where DICOM files live: the one module that touches the archive's folder.

Files are named by a random UUID, never by a UID or any other DICOM value, so nothing a sender
writes can choose a path. A file appears under its final name only once it is complete and on
disk: it is written to a temporary name in the same folder, fsynced, renamed, and the folder
fsynced. Replacing this module is the way to put the archive on an object store.
"""

import errno
import os
import uuid
import zlib
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings

TEMP_PREFIX = ".tmp-"


class StorageFull(Exception):
    """The archive's disk is full (or over quota): nothing was stored."""


def root() -> Path:
    return settings.STORAGE_DIR


def absolute(relative: str) -> Path:
    return root() / relative


# Files go into 4,096 folders named by the first three hex digits of their UUID: ten million
# files make about 2,500 per folder. (Older archives also hold files two levels deep: paths are
# relative and kept in the index, so both layouts live side by side.)
FOLDER_DIGITS = 3


def new_relative_path() -> str:
    name = uuid.uuid4().hex
    return f"{name[:FOLDER_DIGITS]}/{name}.dcm"


def prepare() -> None:
    """Make every missing storage folder, durably, so that no write waits for one.

    A new folder is durable only once its parent is fsynced, a disk flush of its own: made on
    demand, the first files of a new archive would each pay for one.
    """
    base = str(root())
    _make_folders(base)
    existing = set(os.listdir(base))
    names = (f"{n:0{FOLDER_DIGITS}x}" for n in range(16**FOLDER_DIGITS))
    missing = [name for name in names if name not in existing]
    for name in missing:
        os.makedirs(os.path.join(base, name), exist_ok=True)
    if missing:
        _fsync_folder(base)


def write(relative: str, chunks: Iterable[bytes]) -> tuple[int, int]:
    """Durably write ``chunks`` as the file ``relative``; return its (size, CRC-32).

    Raises StorageFull when the disk is full, and leaves no temporary file behind on any error.
    """
    # Plain strings and os calls: this runs for every instance received.
    final = os.path.join(root(), relative)
    folder, name = os.path.split(final)
    temp = os.path.join(folder, TEMP_PREFIX + name)
    size = crc = 0
    try:
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            # The folder's first file.
            _make_folders(folder)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for chunk in chunks:
                with memoryview(chunk) as view:
                    written = 0
                    while written < len(view):
                        written += os.write(fd, view[written:])
                size += len(chunk)
                crc = zlib.crc32(chunk, crc)
            os.fsync(fd)
            _drop_from_cache(fd)
        finally:
            os.close(fd)
        os.rename(temp, final)
        _fsync_folder(folder)
    except BaseException as exc:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(str(exc)) from exc
        raise
    return size, crc


def delete(relative: str) -> None:
    absolute(relative).unlink(missing_ok=True)


def open_file(relative: str):
    return open(absolute(relative), "rb")


def iter_files() -> Iterable[str]:
    """Every stored file (relative path), temporary ones included, for the storage check."""
    base = root()
    if not base.exists():
        return
    for dirpath, _dirnames, filenames in os.walk(base):
        for name in filenames:
            yield str(Path(dirpath, name).relative_to(base))


def _make_folders(folder: str) -> None:
    """Create ``folder`` and any missing parents, each one durably (its entry fsynced)."""
    parent = os.path.dirname(folder)
    if not os.path.isdir(parent):
        _make_folders(parent)
    try:
        os.mkdir(folder)
    except FileExistsError:
        # Another writer made it first, and may not have fsynced its parent yet.
        pass
    _fsync_folder(parent)


def _drop_from_cache(fd: int) -> None:
    # The file is on disk now, and an archive receives far more than anyone views at once: its
    # pages would push the database and the files being viewed out of the page cache. Handing
    # them back at once also lets the next file reuse them, where allocating fresh pages costs
    # more than the write itself (eight times as much on this project's benchmark VMs).
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _fsync_folder(folder: str) -> None:
    # The rename is only durable once the folder entry itself reaches the disk.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
