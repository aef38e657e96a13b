"""Timing one ONNX file on this machine under a MeasureProtocol.

The procedure (also in docs/agents.md):
1. hash the file, load it with the runtime (load time is not measured);
2. build one fixed random float input (seeded) of the model's input shape;
3. `protocol.warmup` untimed runs;
4. batches of `protocol.runs` runs, each timed alone with time.perf_counter_ns, with Python's
   garbage collector paused during a batch; batches repeat until the p50s of the last two agree
   within `protocol.stability_tolerance` (stable) or `protocol.max_batches` is reached
   (unstable); then batches continue while the timed phase is shorter than
   `protocol.min_duration_s`, which can add batches beyond `max_batches`;
5. the statistics cover EVERY timed run of every batch. For a certificate that is the
   conservative choice (slow early batches raise the p90 instead of being dropped) and it is
   what MLPerf's single-stream rule counts (every query within the minimum duration).

`stop` (the agent is shutting down) and `cancel` (the server dropped the task) are checked
before every run, outside the timed window, so either ends a protocol that can take minutes
within one inference; checking an Event costs well under a microsecond.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from budgetprune.errors import MeasurementError
from budgetprune.hashing import sha256_file
from budgetprune.schemas.measurement import DeviceFingerprint, MeasurementResult, MeasureProtocol
from device_agents.errors import MeasurementStoppedError, TaskCancelledError
from device_agents.fingerprint import local_fingerprint
from device_agents.runtimes import Session, get_runtime
from device_agents.stats import latency_stats, p50_ms, p50s_agree

__all__ = ["measure", "resolve_input_shape", "sha256_file"]

_SEED = 0


def resolve_input_shape(
    model_shape: Sequence[int | None], batch_size: int, hint: Sequence[int] | None = None
) -> list[int]:
    """Concrete input shape: the model's fixed dims, else the protocol's batch, else the hint.

    The hint (the lease's input shape) fills dynamic non-batch dims and is checked against the
    model's fixed non-batch dims, so a lease for one resolution never times another silently.
    """
    use_hint = hint is not None and len(hint) == len(model_shape)
    shape: list[int] = []
    for i, dim in enumerate(model_shape):
        wanted = hint[i] if use_hint and hint is not None else None
        if dim is not None:
            if i > 0 and wanted is not None and wanted != dim:
                raise MeasurementError(
                    f"input shape {list(hint or [])} does not fit the model's {list(model_shape)}"
                )
            shape.append(dim)
        elif i == 0:
            shape.append(batch_size)
        elif wanted is not None:
            shape.append(wanted)
        else:
            raise MeasurementError(
                f"input dim {i} of the model is dynamic and no input shape says its size"
            )
    return shape


def _check(stop: threading.Event | None, cancel: threading.Event | None, where: str) -> None:
    if cancel is not None and cancel.is_set():
        raise TaskCancelledError(f"measurement cancelled {where}")
    if stop is not None and stop.is_set():
        raise MeasurementStoppedError(f"measurement stopped {where}")


def _timed_batch(
    session: Session,
    x: np.ndarray,
    runs: int,
    stop: threading.Event | None,
    cancel: threading.Event | None = None,
) -> list[float]:
    durations = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            _check(stop, cancel, "before it finished")
            start = clock()
            session.run(x)
            durations[i] = clock() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return (durations / 1e6).tolist()


def measure(
    path: Path,
    runtime: str,
    protocol: MeasureProtocol,
    device: DeviceFingerprint | None = None,
    *,
    stop: threading.Event | None = None,
    cancel: threading.Event | None = None,
) -> MeasurementResult:
    """Measure `path` here. `device` supplies agent id and device class; the fields that describe
    how this run was done (runtime, version, threads, batch size, input shape) are overwritten
    with what was actually used, so the result cannot claim a setting it did not run.

    Raises MeasurementStoppedError once `stop` is set and TaskCancelledError once `cancel` is,
    at the next run; a load in progress (graph optimisation, TVM tuning) is not interrupted,
    the check follows it."""
    path = Path(path)
    rt = get_runtime(runtime)
    sha256 = sha256_file(path)
    _check(stop, cancel, "before loading")
    session = rt.load(path, protocol.threads)
    shape = resolve_input_shape(
        session.input_shape, protocol.batch_size, device.input_shape if device else None
    )
    rng = np.random.default_rng(_SEED)
    x = rng.standard_normal(shape, dtype=np.float32).astype(session.input_dtype, copy=False)

    for _ in range(protocol.warmup):
        _check(stop, cancel, "during warm-up")
        session.run(x)

    batches: list[list[float]] = []
    stable = False
    started = time.perf_counter()
    while True:
        batches.append(_timed_batch(session, x, protocol.runs, stop, cancel))
        if len(batches) >= 2:
            stable = p50s_agree(
                p50_ms(batches[-2]), p50_ms(batches[-1]), protocol.stability_tolerance
            )
        rule_done = stable or len(batches) >= protocol.max_batches
        if rule_done and time.perf_counter() - started >= protocol.min_duration_s:
            break

    batch_size = shape[0] if shape else protocol.batch_size
    if device is None:
        device = local_fingerprint(runtime, protocol.threads, batch_size, shape)
    device = device.model_copy(
        update={
            "runtime": runtime,
            "runtime_version": rt.version(),
            "threads": protocol.threads,
            "batch_size": batch_size,
            "input_shape": shape,
        }
    )
    all_runs = [d for b in batches for d in b]
    return MeasurementResult(
        stats=latency_stats(all_runs, warmup=protocol.warmup),
        protocol=protocol,
        device=device,
        stable=stable,
        batch_p50_ms=[p50_ms(b) for b in batches],
        model_sha256=sha256,
    )
