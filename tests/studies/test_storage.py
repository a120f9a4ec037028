"""studies.storage: durable writes under generated names, in folders made on demand."""

import os
import threading
import zlib

from studies import storage


def test_write_makes_missing_folders_and_leaves_only_the_final_file(settings) -> None:
    assert not settings.STORAGE_DIR.exists()
    data = os.urandom(300_000)
    relative = storage.new_relative_path()

    size, crc = storage.write(relative, [data[:1000], memoryview(data)[1000:]])

    assert (size, crc) == (len(data), zlib.crc32(data))
    assert storage.absolute(relative).read_bytes() == data
    assert list(storage.iter_files()) == [relative]


def test_concurrent_writers_creating_the_same_folders_all_succeed(settings) -> None:
    # Every writer finds the folders missing at once; losing the race to create one is fine.
    relatives = [f"ab/cd/{n:032x}.dcm" for n in range(8)]
    barrier = threading.Barrier(len(relatives))
    errors = []

    def write(relative: str) -> None:
        barrier.wait()
        try:
            storage.write(relative, [relative.encode()])
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below.
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(r,)) for r in relatives]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(storage.iter_files()) == relatives
    assert all(storage.absolute(r).read_bytes() == r.encode() for r in relatives)


def test_prepare_makes_every_folder_once_and_new_files_go_into_them(settings) -> None:
    storage.prepare()
    folders = sorted(p.name for p in settings.STORAGE_DIR.iterdir())
    assert len(folders) == 16**storage.FOLDER_DIGITS
    assert folders[0] == "000" and folders[-1] == "fff"
    # Again on a complete tree: nothing changes, nothing fails.
    storage.prepare()
    assert len(list(settings.STORAGE_DIR.iterdir())) == len(folders)

    relative = storage.new_relative_path()
    folder, name = relative.split("/")
    assert folder in folders and name.startswith(folder) and name.endswith(".dcm")
    storage.write(relative, [b"data"])
    assert list(storage.iter_files()) == [relative]
