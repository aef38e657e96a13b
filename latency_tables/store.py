"""Tables on disk: one JSON file per (device, runtime + version, threads, batch, model, image).

The key is readable (so a directory listing says what is there) and ends in a short hash of the
full fingerprint, so two devices with the same CPU name but another OS or core count never share
a file. Writes go to a temporary file in the same directory and are renamed into place: a reader
never sees half a table. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from budgetprune.schemas.measurement import DeviceFingerprint
from latency_tables.schema import SCHEMA_VERSION, LatencyTable

__all__ = ["table_key", "save_table", "load_table", "find_table"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-_")[:40] or "unknown"


def table_key(
    device: DeviceFingerprint, model: str, img_size: int, statistic: str = "p50_ms"
) -> str:
    """Where a table of `model` at `img_size` measured on `device` is filed (`statistic`: what
    it holds of each graph's runs; a table of minima is another table)."""
    where = device.model_dump(mode="json", exclude={"input_shape", "agent_id"})
    digest = hashlib.sha256(json.dumps(where, sort_keys=True).encode()).hexdigest()[:10]
    parts = [
        _slug(device.cpu_model),
        f"{_slug(device.runtime)}-{_slug(device.runtime_version)}",
        f"t{device.threads}",
        f"b{device.batch_size}",
        _slug(model),
        str(img_size),
        statistic.removesuffix("_ms"),
        digest,
    ]
    return "__".join(parts)


def save_table(table: LatencyTable, path: Path) -> Path:
    """Write `table` to `path` atomically; a directory gets the file `<table_key>.json`."""
    path = Path(path)
    if path.is_dir():
        key = table_key(table.device, table.model, table.img_size, table.statistic)
        path = path / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes it private; a table is not a secret
            f.write(table.model_dump_json(indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_table(path: Path) -> LatencyTable:
    """Read a table, saying plainly when it was written by another schema version."""
    data = json.loads(Path(path).read_text())
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{path} holds a latency table of schema version {version!r}; this code reads "
            f"version {SCHEMA_VERSION}: rebuild it with `budgetprune lut build`"
        )
    return LatencyTable.model_validate(data)


def find_table(
    directory: Path,
    device: DeviceFingerprint,
    model: str,
    img_size: int,
    statistic: str = "p50_ms",
) -> LatencyTable | None:
    """The stored table for exactly this device and settings, if there is one."""
    path = Path(directory) / f"{table_key(device, model, img_size, statistic)}.json"
    return load_table(path) if path.is_file() else None
