"""The last few models an agent downloaded, kept by their hash.

A table build times the dense model between every two other models (`latency_tables.build`),
and a job certifies the same bytes more than once: without a cache a phone fetched a dense
deit_small (88 MB) twenty times for one table. A kept file is hashed again before each use,
so a file changed on disk is fetched afresh, never measured.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from budgetprune.hashing import sha256_file

__all__ = ["ModelCache"]

_PREFIX = "model-"


class ModelCache:
    def __init__(self, folder: Path, keep: int = 2) -> None:
        self.folder = Path(folder)
        self.keep = keep

    def path_for(self, sha256: str) -> Path:
        """Where the model of `sha256` is downloaded to (a server-sent hash never steers the
        path: anything but hex is dropped from the name)."""
        return self.folder / f"{_PREFIX}{re.sub(r'[^0-9a-f]', '', sha256.lower())[:64]}.onnx"

    def get(self, sha256: str) -> Path | None:
        """The kept file of `sha256`, or None (and a kept file whose bytes changed removed)."""
        path = self.path_for(sha256)
        if not path.is_file():
            return None
        if sha256_file(path) != sha256.lower():
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # most recently used
        return path

    def trim(self) -> None:
        """Keep the `keep` most recently used models, remove the rest."""
        kept = sorted(
            self.folder.glob(f"{_PREFIX}*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for path in kept[self.keep :]:
            path.unlink(missing_ok=True)

    def clear(self) -> None:
        for path in self.folder.glob(f"{_PREFIX}*.onnx"):
            path.unlink(missing_ok=True)
