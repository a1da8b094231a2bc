"""The shipped ``.npz`` weight files, read without copying them: uncompressed members are memory-mapped.

The training scripts write weights with :func:`save_npz` (``np.savez``, no compression): a zip archive
whose members are ``.npy`` files stored as they are. :func:`load_npz` maps each such member read-only
instead of reading (or decompressing) it, so loading a model takes a fraction of a millisecond, only the
rows a text uses are read from disk, and processes on one machine share the pages. Other members
(compressed, as ``np.savez_compressed`` writes them) are read the ordinary way. Nothing is unpickled.
"""

from __future__ import annotations

import mmap
import os
import struct
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # zip local file header: signature ... name length, extra length
_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def load_npz(path: str | Path) -> dict[str, NDArray[Any]]:
    """The arrays of the ``.npz`` file at ``path`` by name; those stored uncompressed are read-only
    views of the mapped file (which stays mapped while any of them is alive)."""
    arrays: dict[str, NDArray[Any]] = {}
    with open(path, "rb") as file, zipfile.ZipFile(file) as archive:
        mapped: mmap.mmap | None = None
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type == zipfile.ZIP_STORED:
                if mapped is None:
                    mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
                array = _map_member(file, info, mapped)
                if array is not None:
                    arrays[name] = array
                    continue
            with archive.open(info) as member:
                arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
    return arrays


def _map_member(file: IO[bytes], info: zipfile.ZipInfo, mapped: mmap.mmap) -> NDArray[Any] | None:
    """The array of an uncompressed member as a view of ``mapped``, or None if it has to be read instead
    (an empty or object array, or a ``.npy`` version this does not know)."""
    file.seek(info.header_offset)
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(file.read(_LOCAL_HEADER.size))
    if signature != b"PK\x03\x04":
        raise ValueError(f"{info.filename}: not a zip member header")
    file.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
    read_header = _NPY_HEADERS.get(np.lib.format.read_magic(file))
    if read_header is None:
        return None
    shape, fortran_order, dtype = read_header(file)
    count = int(np.prod(shape))
    if dtype.hasobject or count == 0:
        return None
    array = np.frombuffer(mapped, dtype=dtype, count=count, offset=file.tell())
    return array.reshape(shape, order="F" if fortran_order else "C")


def save_npz(path: Path, **arrays: NDArray[Any]) -> None:
    """Write ``arrays`` for :func:`load_npz`: uncompressed (the wheel compresses the file anyway), to a
    new file renamed over ``path``, so a process that has the old file mapped keeps reading it intact."""
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, **arrays)  # type: ignore[arg-type]
    os.replace(partial, path)
