"""Apache TVM (Relax, 0.27) as a runtime; registered only where `tvm` can be imported.

Install with the `tvm` extra (apache-tvm 0.27.0.post1 with apache-tvm-ffi pinned to 0.1.14.post1:
0.1.15.post2 segfaults in JSON serialisation). Tested in tests/device_agents/test_tvm_runtime.py.
ONNX enters through relax.frontend.onnx.from_onnx, targets are dicts, and TVM's thread pool must
be sized with TVM_NUM_THREADS before it starts (it otherwise uses half the cores).

Untuned builds run ViTs tens of times slower than ONNX Runtime, so an agent that serves TVM
jobs sets BUDGETPRUNE_TVM_DB_DIR: builds then use that device's MetaSchedule database
(tvm_tuning.py), and the version string says so ("+ms"), which keeps tuned and untuned timings
in different latency tables and fingerprints.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from budgetprune.errors import MeasurementError
from budgetprune.hashing import sha256_file
from device_agents.runtimes.base import Runtime, Session
from device_agents.runtimes.onnx_file import check_self_contained
from device_agents.runtimes.registry import register_runtime
from device_agents.runtimes.tvm_tuning import (
    TvmTuning,
    compile_tuned,
    cpu_target,
    prepare,
    tune,
)

__all__ = ["TvmRuntime", "TvmSession"]


class TvmSession(Session):
    def __init__(self, vm: Any, device: Any, shape: list[int | None], dtype: str) -> None:
        import tvm

        self._vm = vm
        self._device = device
        # tvm-ffi builds call arrays "tensor"; older builds "nd.array"
        self._to_tvm = getattr(tvm.runtime, "tensor", None) or tvm.nd.array
        self.input_shape = tuple(shape)
        self.input_dtype = np.dtype(dtype)

    def run(self, x: np.ndarray) -> None:
        out = self._vm["main"](self._to_tvm(x, device=self._device))
        # the VM may return before the kernels finish on some devices; CPU is synchronous
        self._device.sync()
        del out

    def infer(self, x: np.ndarray) -> np.ndarray:
        out = self._vm["main"](self._to_tvm(x, device=self._device))
        if not hasattr(out, "numpy"):  # several outputs come back as a tuple
            out = out[0]
        return out.numpy()


# The last builds of this process, by (file hash, threads, mcpu, database): a table build loads
# the dense model between every two other models (latency_tables.build), and compiling a whole
# ViT takes seconds (tuned: tens of seconds) where timing it takes one.
_BUILDS: OrderedDict[tuple[str, int, str | None, str | None], Any] = OrderedDict()
KEEP_BUILDS = 2


class TvmRuntime(Runtime):
    module = "tvm"

    def __init__(self, tuning: TvmTuning | None = None) -> None:
        self.tuning = tuning or TvmTuning()

    def version(self) -> str:
        # from the package metadata: importing tvm takes seconds and pulls in torch where it is
        # installed, and agents call this when they register
        try:
            base = importlib.metadata.version("apache-tvm")
        except importlib.metadata.PackageNotFoundError:  # a source build of tvm
            import tvm

            base = str(tvm.__version__)
        return f"{base}+ms" if self.tuning.db_dir is not None else base

    def load(self, path: Path, threads: int) -> Session:
        # read once, when TVM's thread pool starts: the first load in a process fixes it
        os.environ["TVM_NUM_THREADS"] = str(threads)
        check_self_contained(path)
        import onnx
        import tvm
        from tvm import relax

        model = onnx.load(str(path))
        weights = {t.name for t in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in weights]
        if len(inputs) != 1:
            raise MeasurementError("the TVM runtime expects a model with exactly one input")
        dims = inputs[0].type.tensor_type.shape.dim
        shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(inputs[0].type.tensor_type.elem_type)
        db_dir = self.tuning.db_dir
        key = (sha256_file(path), threads, self.tuning.mcpu, str(db_dir) if db_dir else None)
        executable = _BUILDS.get(key)
        if executable is not None:
            _BUILDS.move_to_end(key)
        elif db_dir is None:
            from tvm.relax.frontend.onnx import from_onnx

            mod = from_onnx(model, keep_params_in_input=False)
            # constant subgraphs (a table graph's tiled tensors, latency_tables.compact) computed
            # once, as ONNX Runtime and the tuned builds do, not at every run
            mod = relax.transform.FoldConstant()(mod)
            executable = tvm.compile(mod, target=cpu_target(threads, self.tuning.mcpu))
        else:
            mod, target = prepare(model, threads, self.tuning.mcpu)
            tune(mod, target, db_dir, self.tuning.trials_per_task)
            executable = compile_tuned(mod, target, db_dir)
        _BUILDS[key] = executable
        while len(_BUILDS) > KEEP_BUILDS:
            _BUILDS.popitem(last=False)
        device = tvm.cpu()
        return TvmSession(relax.VirtualMachine(executable, device), device, shape, str(dtype))


if importlib.util.find_spec("tvm") is not None:
    register_runtime("tvm")(TvmRuntime)
