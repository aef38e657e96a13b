"""Checks on untrusted files, light enough for the API process (no torch).

Each check reads only headers and directories, never executes or unpickles anything, and raises
UnsafeFileError with a message that says what is wrong.
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from budgetprune.errors import BudgetPruneError

MAX_MEMBERS = 2_000_000
MAX_UNCOMPRESSED_BYTES = 20 * 1024**3
MAX_RATIO = 200  # uncompressed/compressed: images and weights barely compress, bombs do
_ST_DTYPES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


class UnsafeFileError(BudgetPruneError):
    pass


def check_zip_members(infos: Sequence[zipfile.ZipInfo]) -> None:
    """Refuse zip bombs and members whose names could escape a folder."""
    if len(infos) > MAX_MEMBERS:
        raise UnsafeFileError(f"zip has {len(infos)} members; at most {MAX_MEMBERS} are accepted")
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise UnsafeFileError(f"zip unpacks to {total} bytes; at most {MAX_UNCOMPRESSED_BYTES}")
    if packed and total / packed > MAX_RATIO:
        raise UnsafeFileError(
            f"zip compression ratio {total / packed:.0f}:1 looks like a zip bomb; refused"
        )
    for info in infos:
        name = PurePosixPath(info.filename.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts:
            raise UnsafeFileError(f"zip member {info.filename!r} points outside the archive")


def check_dataset_zip(path: Path) -> list[str]:
    """A zip of ImageFolder splits: returns its top-level split folders."""
    if not zipfile.is_zipfile(path):
        raise UnsafeFileError("not a zip file")
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    check_zip_members(infos)
    tops = sorted({PurePosixPath(i.filename).parts[0] for i in infos if i.filename.strip("/")})
    if "train" not in tops or not ({"val", "test"} & set(tops)):
        raise UnsafeFileError(
            f"a data set zip needs train/ and val/ (or test/) folders of class folders; "
            f"found {', '.join(tops) or 'nothing'}"
        )
    return tops


def check_safetensors(path: Path) -> dict[str, list[int]]:
    """Validate a safetensors header (offsets inside the file, sizes matching shapes)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise UnsafeFileError("not a safetensors file: too short")
        (n,) = struct.unpack("<Q", raw)
        if n > min(size - 8, 100 * 1024**2):
            raise UnsafeFileError("not a safetensors file: header length out of range")
        try:
            header = json.loads(fh.read(n))
        except ValueError:
            raise UnsafeFileError("not a safetensors file: header is not JSON") from None
    data = size - 8 - n
    shapes: dict[str, list[int]] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = meta["dtype"], meta["shape"], meta["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise UnsafeFileError(f"tensor {name!r}: malformed header entry") from None
        count = 1
        for d in shape:
            count *= int(d)
        if dtype not in _ST_DTYPES or not 0 <= begin <= end <= data:
            raise UnsafeFileError(f"tensor {name!r}: bad dtype or offsets")
        if end - begin != count * _ST_DTYPES[dtype]:
            raise UnsafeFileError(f"tensor {name!r}: {end - begin} bytes for shape {shape}")
        shapes[name] = [int(d) for d in shape]
    return shapes


def check_torch_archive(path: Path) -> None:
    """A `.pt` saved by torch.save: a zip with a data.pkl. It is only ever loaded with
    torch.load(weights_only=True), which refuses pickled code; here we check the container."""
    if not zipfile.is_zipfile(path):
        raise UnsafeFileError(
            "a .pt/.pth checkpoint must be a torch.save zip archive; legacy pickle files are "
            "refused (save it again with torch.save, or send .safetensors)"
        )
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    check_zip_members(infos)
    if not any(i.filename.endswith("data.pkl") for i in infos):
        raise UnsafeFileError("not a torch.save archive: no data.pkl inside")
