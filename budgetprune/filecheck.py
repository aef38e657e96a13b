"""Checks on untrusted files, light enough for the API process (no torch).

Each check reads only headers and directories, never executes or unpickles anything, and raises
UnsafeFileError with a message that says what is wrong.
"""

from __future__ import annotations

import json
import pickletools
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
    return {name: meta["shape"] for name, meta in safetensors_header(path).items()}


def safetensors_header(path: Path) -> dict[str, dict]:
    """The validated header: tensor name -> {"dtype", "shape"}."""
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
    if not isinstance(header, dict):
        raise UnsafeFileError("not a safetensors file: header is not a JSON object")
    tensors: dict[str, dict] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = meta["dtype"], meta["shape"], meta["data_offsets"]
            shape = [int(d) for d in shape]
            begin, end = int(begin), int(end)
        except (KeyError, TypeError, ValueError):
            raise UnsafeFileError(f"tensor {name!r}: malformed header entry") from None
        count = 1
        for d in shape:
            if d < 0:
                raise UnsafeFileError(f"tensor {name!r}: negative dimension in {shape}")
            count *= d
        if dtype not in _ST_DTYPES or not 0 <= begin <= end <= data:
            raise UnsafeFileError(f"tensor {name!r}: bad dtype or offsets")
        if end - begin != count * _ST_DTYPES[dtype]:
            raise UnsafeFileError(f"tensor {name!r}: {end - begin} bytes for shape {shape}")
        tensors[name] = {"dtype": dtype, "shape": shape}
    return tensors


# What a torch.save of tensors, parameters and plain containers names. torch.load with
# weights_only=True refuses anything else at load time; refusing it at upload says so at once.
_TORCH_GLOBALS = frozenset(
    {
        "collections OrderedDict",
        "torch._utils _rebuild_tensor_v2",
        "torch._utils _rebuild_tensor",
        "torch._utils _rebuild_parameter",
        "torch._utils _rebuild_parameter_with_state",
        "torch._tensor _rebuild_from_type_v2",
        "torch device",
        "torch Size",
        "torch float32",
        "torch float16",
        "torch bfloat16",
        "torch float64",
    }
    | {
        f"torch {kind}Storage"
        for kind in ("Float", "Half", "BFloat16", "Double", "Long", "Int", "Short", "Char")
        + ("Byte", "Bool")
    }
    | {"torch.storage UntypedStorage", "torch.storage TypedStorage"}
)
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING"})
_STRING_OPS |= {"SHORT_BINSTRING", "BINSTRING"}


def pickle_globals(data: bytes) -> list[str]:
    """Every `module name` a pickle would import, read from its opcodes without running it.

    GLOBAL and INST carry the name; protocol 4's STACK_GLOBAL takes two strings from the stack,
    pushed directly or fetched from the memo, which this follows."""
    found: list[str] = []
    strings: list[str] = []  # the most recent string values, as STACK_GLOBAL would see them
    memo: dict[int, str] = {}
    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name in ("GLOBAL", "INST"):
                found.append(str(arg))
            elif name in _STRING_OPS:
                strings.append(str(arg))
            elif name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                memo[int(arg)] = strings[-1]
            elif name == "MEMOIZE" and strings:
                memo[len(memo)] = strings[-1]
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                if int(arg) in memo:
                    strings.append(memo[int(arg)])
            elif name == "STACK_GLOBAL":
                if len(strings) < 2:
                    found.append("<unresolved STACK_GLOBAL>")
                else:
                    found.append(f"{strings[-2]} {strings[-1]}")
    except (ValueError, EOFError) as exc:
        raise UnsafeFileError(f"the checkpoint's pickle is malformed: {exc}") from None
    return found


def check_torch_archive(path: Path) -> None:
    """A `.pt` saved by torch.save: a zip with a data.pkl that names nothing but tensors and
    containers. It is only ever loaded with torch.load(weights_only=True) as well."""
    if not zipfile.is_zipfile(path):
        raise UnsafeFileError(
            "a .pt/.pth checkpoint must be a torch.save zip archive; legacy pickle files are "
            "refused (save it again with torch.save, or send .safetensors)"
        )
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    check_zip_members(infos)
    pickles = [i for i in infos if i.filename.endswith("data.pkl")]
    if not pickles:
        raise UnsafeFileError("not a torch.save archive: no data.pkl inside")
    with zipfile.ZipFile(path) as zf:
        for info in pickles:
            names = pickle_globals(zf.read(info))
            foreign = sorted({n for n in names if n not in _TORCH_GLOBALS})
            if foreign:
                raise UnsafeFileError(
                    f"the checkpoint's pickle imports {', '.join(foreign[:5])}, which is not a "
                    "tensor or a container (torch.load(weights_only=True) would refuse it "
                    "too); save only the state dict, or send .safetensors"
                )
