"""MetaSchedule tuning for the TVM runtime, with one tuning database per device, reused across
sub-networks.

Untuned TVM builds run ViTs tens of times slower than ONNX Runtime on CPU, so a TVM latency only
means something for a tuned build. Tuning is slow (seconds per candidate), so it is done once
per kernel shape: a model's tuning tasks that already have records in the device's database are
not tuned again, and the engine's rounded widths (heads, MLP chunks of 8+) keep the set of
shapes that pruned sub-networks add small. `budgetprune tvm-tune` fills the database ahead of
jobs; the agent tunes what a leased model still lacks (`trials_per_task`) before it times it.
Builds go ONNX -> Relax -> FastMath -> compile_relax with the database.

The database directory is locked while it is read or written, because MetaSchedule's JSON
database appends to plain files and two agents on one device may share it. Facts about this
TVM release (the ffi pin, FastMath) are in ../shared/docs/tvm-notes.md.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["TuneReport", "TvmTuning", "compile_tuned", "cpu_target", "prepare", "tune"]

log = logging.getLogger(__name__)


class TvmTuning(BaseSettings):
    """How the agent's TVM runtime builds: untuned unless a database directory is set."""

    model_config = SettingsConfigDict(env_prefix="BUDGETPRUNE_TVM_", extra="ignore")

    db_dir: Path | None = Field(
        None, description="this device's MetaSchedule database; unset: untuned builds"
    )
    trials_per_task: int = Field(
        0,
        ge=0,
        description="trials the agent spends on each tuning task a leased model adds to the "
        "database before timing it (0: use what `budgetprune tvm-tune` put there)",
    )
    mcpu: str | None = Field(
        None,
        description="LLVM CPU to generate code for; unset: this host's (llvm_get_system_cpu). "
        "Without one LLVM targets generic x86-64, which has no AVX at all",
    )


def cpu_target(threads: int, mcpu: str | None = None) -> Any:
    """The llvm target for this host's own CPU. Tuning records are per target, so a database
    tuned for one CPU is not silently used for another."""
    import tvm
    from tvm.target import codegen

    cpu = mcpu or codegen.llvm_get_system_cpu()
    if not codegen.llvm_is_valid_cpu(cpu, codegen.llvm_get_system_triple()):
        cpu = None  # an LLVM older than the CPU: let it pick
    spec: dict[str, Any] = {"kind": "llvm", "num-cores": threads}
    if cpu and cpu != "generic":
        spec["mcpu"] = cpu
    return tvm.target.Target(spec)


@dataclass
class TuneReport:
    """What one tuning call did, for the CLI, the benchmark and the agent's log."""

    tasks: int
    new_tasks: list[str] = field(default_factory=list)
    trials: int = 0
    seconds: float = 0.0
    records: int = 0
    untuned: list[str] = field(default_factory=list)  # kernels with no record


@contextmanager
def _memoized_getmodule() -> Iterator[None]:
    """Importing tvm.s_tir.tensor_intrin (MetaSchedule does, once per process) parses ~500
    TVMScript functions, each calling inspect.stack(), whose inspect.getmodule scans every
    loaded module; with torch loaded (tvm imports it where installed) that took 34 s here, 4 s
    with this cache. For frames and code the answer depends only on the source file."""
    original = inspect.getmodule
    by_file: dict[str, Any] = {}

    def getmodule(obj: Any, _filename: str | None = None) -> Any:
        code = getattr(obj, "f_code", obj)
        if not isinstance(code, types.CodeType):
            return original(obj, _filename)
        if code.co_filename not in by_file:
            by_file[code.co_filename] = original(obj, _filename)
        return by_file[code.co_filename]

    inspect.getmodule = getmodule
    try:
        yield
    finally:
        inspect.getmodule = original


def _import_tensor_intrin() -> None:
    """Also the initializer of MetaSchedule's build and run worker processes, which import it
    too."""
    if "tvm.s_tir.tensor_intrin" not in sys.modules:
        with _memoized_getmodule():
            import tvm.s_tir.tensor_intrin  # noqa: F401


def prepare(model: Any, threads: int, mcpu: str | None = None) -> tuple[Any, Any]:
    """ONNX -> Relax with FastMath. Returns (module, target)."""
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    _import_tensor_intrin()
    mod = from_onnx(model, keep_params_in_input=False)
    # erf in GELU and softmax dominate an untuned ViT; FastMath keeps outputs within ~1e-6
    mod = relax.transform.FastMathTransform()(mod)
    return mod, cpu_target(threads, mcpu)


def _fused(mod: Any, target: Any) -> Any:
    """The fused TIR functions compile_relax will look up, made by the passes it runs itself.
    It must get the unfused module: given one that relax.get_pipeline("zero") had fused, it
    fused again into functions the database had no records for (DeiT-T at 224: 862 ms, the
    untuned speed, against 88 ms with the same records)."""
    import tvm
    from tvm import relax
    from tvm.relax import pipeline

    passes = [
        *pipeline.library_dispatch_passes(target),
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]
    with target, tvm.transform.PassContext(opt_level=3):
        return tvm.transform.Sequential(passes)(mod)


@contextmanager
def _locked(db_dir: Path) -> Iterator[Any]:
    import fcntl  # POSIX only, and imported here: the runtimes package loads on any OS

    from tvm.s_tir import meta_schedule as ms

    db_dir.mkdir(parents=True, exist_ok=True)
    with (db_dir / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield ms.database.JSONDatabase(work_dir=str(db_dir))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _untuned(db: Any, tasks: list[Any], target: Any) -> list[Any]:
    return [t for t in tasks if db.query_tuning_record(t.dispatched[0], target, "main") is None]


def tune(mod: Any, target: Any, db_dir: Path, trials_per_task: int) -> TuneReport:
    """Tune the tasks of `mod` that `db_dir` has no record for, `trials_per_task` each."""
    from tvm.s_tir import meta_schedule as ms

    os.environ.setdefault("TVM_NUM_THREADS", str(target.attrs.get("num-cores", 1)))
    fused = _fused(mod, target)
    tasks = ms.relax_integration.extract_tasks(fused, target)
    with _locked(db_dir) as db:
        new = _untuned(db, tasks, target)
        report = TuneReport(tasks=len(tasks), new_tasks=[t.task_name for t in new])
        if new and trials_per_task > 0:
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                extracted_tasks=new, work_dir=str(db_dir), seed=0
            )
            t0 = time.monotonic()
            ms.tune.tune_tasks(
                tasks=contexts,
                task_weights=weights,
                work_dir=str(db_dir),
                max_trials_global=trials_per_task * len(new),
                max_trials_per_task=trials_per_task,
                num_trials_per_iter=min(64, trials_per_task),
                database=db,
                builder=ms.builder.LocalBuilder(initializer=_import_tensor_intrin),
                runner=ms.runner.LocalRunner(initializer=_import_tensor_intrin),
            )
            report.seconds = round(time.monotonic() - t0, 1)
            report.trials = trials_per_task * len(new)
        report.records = len(db)
        report.untuned = _unscheduled(fused, target, db)
    log.info(
        "tuned %d new task(s) of %d in %.0f s (%d trials); kernels left untuned: %s",
        len(new) if report.trials else 0,
        len(tasks),
        report.seconds,
        report.trials,
        ", ".join(report.untuned) or "none",
    )
    return report


def _unscheduled(fused: Any, target: Any, db: Any) -> list[str]:
    """Kernels the build will not find in the database (they get slow default schedules): the
    same lookup compile_relax makes, on the functions it makes."""
    import tvm
    from tvm.relax.transform import MetaScheduleApplyDatabase

    with target, db, tvm.transform.PassContext(opt_level=3):
        applied = MetaScheduleApplyDatabase()(fused)
    return sorted(
        gv.name_hint
        for gv, func in applied.functions.items()
        if isinstance(func, tvm.tirx.PrimFunc)
        and not (func.attrs and func.attrs.get("tirx.is_scheduled", False))
    )


def compile_tuned(mod: Any, target: Any, db_dir: Path) -> Any:
    """Build with the database's best schedules; kernels it lacks fall back to default ones."""
    from tvm.s_tir import meta_schedule as ms

    with _locked(db_dir) as db:
        return ms.relax_integration.compile_relax(db, mod, target, None)
