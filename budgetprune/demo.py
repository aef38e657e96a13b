"""`budgetprune demo`: the whole service on the embedded default, one job, then everything stops.

API, one Celery worker (SQLAlchemy transport on SQLite, no broker server) and one CPU agent start
as real processes; the job is submitted over REST like any user's.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from budgetprune.client import Client
from budgetprune.schemas import JobCreate
from budgetprune.stack import Stack, stack_env


def run_demo(
    *,
    out: Path,
    model: str = "deit_tiny_patch16_224",
    budget_fraction: float = 0.6,
    img_size: int | None = None,
    as_json: bool = False,
) -> int:
    from budgetprune.cli import _progress

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    started = time.monotonic()
    log = sys.stderr.write
    with Stack(out, stack_env(out, embedded=True)) as stack:
        log(f"starting API on {stack.url}, one worker and one CPU agent (logs: {out}/logs)\n")
        token = stack.start_all(agents=("cpu-agent-1",))
        with Client(stack.url, token) as client:
            agent = client.devices().data[0]
            log(
                f"agent {agent.name}: {agent.cpu_model}, {agent.cores} cores, "
                f"{', '.join(f'{r.name} {r.version}' for r in agent.runtimes)}\n"
            )
            spec = JobCreate(
                model=model,
                img_size=img_size,
                device="cpu",
                runtime="onnxruntime",
                budget_fraction=budget_fraction,
            )
            job = client.submit(spec)
            log(
                f"job {job.id}: {model}, budget {budget_fraction:.0%} of the dense p90 "
                "measured on the agent\n"
            )
            status = job.wait(on_update=None if as_json else _progress, poll_s=1.0)
            log("\n")
            key = client.signing_key().public_key  # the trust anchor, while the server runs
    result_dir = (out / "jobs" / status.id / "out").resolve()
    elapsed = time.monotonic() - started
    body: dict[str, object] = {
        "job_id": status.id,
        "state": status.state,
        "dir": str(result_dir),
        "elapsed_s": round(elapsed, 1),
        "error": status.error,
    }
    if status.state != "succeeded":
        log(f"job ended {status.state}: {status.error}\n")
        print(json.dumps(body) if as_json else f"job {status.id} ended {status.state}")
        return 1
    cert = json.loads((result_dir / "certificate.json").read_text())
    report = json.loads((result_dir / "report.json").read_text())
    verify = f"budgetprune verify {result_dir} --public-key {key} --remeasure"
    body |= {"certificate": cert, "speedup": report["latency"]["speedup_p"], "verify": verify}
    if as_json:
        print(json.dumps(body))
    else:
        dense = report["latency"]["dense"]["p90_ms"]
        print(
            f"dense p90 {dense:.2f} ms -> pruned p90 {cert['certified_ms']:.2f} ms "
            f"(budget {cert['budget_ms']:.2f} ms, passed={cert['passed']}) on "
            f"{cert['device']['cpu_model']}, {cert['device']['runtime']} "
            f"{cert['device']['runtime_version']}, {cert['device']['threads']} thread(s); "
            f"{elapsed:.0f} s in all\n{result_dir}"
        )
        log(f"check it (signature against the server's key, hash, latency here):\n  {verify}\n")
    return 0
