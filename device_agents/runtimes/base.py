"""What a runtime plug-in provides: load a model file, then run it on one input, nothing more.

The measurement loop times `Session.run` alone, so everything a runtime does once per model
(graph optimisation, compilation, allocation of weights) belongs in `Runtime.load`.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

__all__ = ["Runtime", "Session"]


class Session(ABC):
    """A loaded model with exactly one input, ready to be timed."""

    #: dims the model fixes are ints; symbolic (dynamic) dims are None
    input_shape: tuple[int | None, ...]
    input_dtype: np.dtype

    @abstractmethod
    def run(self, x: np.ndarray) -> None:
        """One inference; outputs are discarded because only the time matters."""

    @abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray:
        """One inference, returning the first output: to check that a runtime computes what
        the model does, outside the timed loop."""


class Runtime(ABC):
    """A small stateless factory for sessions, registered under `name` by `register_runtime`."""

    name: ClassVar[str] = ""
    #: top-level Python module the runtime needs; checked without importing it
    module: ClassVar[str] = ""

    @classmethod
    def is_available(cls) -> bool:
        """Cheap check used when the agent advertises its runtimes; importing can take seconds."""
        return not cls.module or importlib.util.find_spec(cls.module) is not None

    @abstractmethod
    def version(self) -> str:
        """Version string recorded in every fingerprint, since latencies move between releases."""

    @abstractmethod
    def load(self, path: Path, threads: int) -> Session:
        """Prepare `path` for timing with `threads` compute threads."""
