"""The `budgetprune` command (contracts.md section 1).

Commands import what they need when they run, so `agent`, `serve` and the REST client never
load torch. Every reporting command takes `--json` and then prints exactly one JSON object on
stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from budgetprune.errors import BudgetPruneError

DEFAULT_SERVER = os.environ.get("BUDGETPRUNE_SERVER", "http://127.0.0.1:8000")


def _emit(args: argparse.Namespace, body: dict[str, object], text: str) -> None:
    print(json.dumps(body, default=str) if getattr(args, "json", False) else text)


def _progress(status) -> None:
    width = 30
    done = int(status.progress * width)
    bits = [f"{status.state:<9}", f"{status.phase:<9}"]
    if status.measured_ms is not None:
        bits.append(f"measured {status.measured_ms:.2f} ms")
    if status.predicted_ms is not None:
        bits.append(f"predicted {status.predicted_ms:.2f} ms")
    if status.budget_ms is not None:
        bits.append(f"budget {status.budget_ms:.2f} ms")
    t = status.training
    if t is not None:
        bits.append(f"{t.loop} step {t.step}/{t.steps} loss {t.loss:.3f}")
    bar = "#" * done + "-" * (width - done)
    sys.stderr.write(f"\r[{bar}] {status.progress:4.0%} " + " ".join(bits) + "   ")
    sys.stderr.flush()


# --- long-running processes -------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from budgetprune.config import get_settings

    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        workers=args.workers,
        timeout_graceful_shutdown=get_settings().shutdown_grace_s,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.tasks import app

    argv = [
        "worker",
        "-Q",
        "jobs",
        "-l",
        args.log_level,
        "-P",
        args.pool,
        "-c",
        str(args.concurrency),
    ]
    if args.hostname:
        argv += ["-n", args.hostname]
    app.worker_main(argv=argv)
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from device_agents.daemon import main as agent_main

    if not args.token:
        raise BudgetPruneError("give the agent token: --token T or BUDGETPRUNE_AGENT_TOKEN")
    return agent_main(
        server=args.server,
        token=args.token,
        name=args.name,
        device_class=args.device_class,
        work_dir=args.work_dir,
        keep_models=args.keep_models,
    )


def cmd_token_create(args: argparse.Namespace) -> int:
    """Admin operation on the server's machine: writes straight to the job store."""
    from budgetprune.config import get_settings
    from budgetprune.store import crud, session_scope

    with session_scope(get_settings().database_url) as session:
        user, token = crud.create_user(session, name=args.name, is_admin=args.admin)
        body = {"user_id": user.id, "name": user.name, "admin": user.is_admin, "token": token}
    _emit(args, body, f"token for {args.name} (shown once; keep it secret):\n{token}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from budgetprune.demo import run_demo

    return run_demo(
        out=Path(args.out),
        budget_fraction=args.budget_fraction,
        model=args.model,
        img_size=args.img_size,
        as_json=args.json,
    )


# --- REST client --------------------------------------------------------------------------------


def _spec_from_args(args: argparse.Namespace):
    from budgetprune.schemas import JobCreate

    fields = {
        "model": args.model,
        "device": args.device,
        "runtime": args.runtime,
        "threads": args.threads,
        "strategy": args.strategy,
        "budget_ms": args.budget_ms,
        "budget_fraction": args.budget_fraction,
        "img_size": args.img_size,
        "num_classes": args.num_classes,
        "dataset": args.dataset,
        "checkpoint": args.checkpoint,
        "finetune_steps": args.finetune_steps,
        "margin": args.margin,
        "latency_table": args.latency_table,
        "certification": args.certification,
    }
    return JobCreate(**{k: v for k, v in fields.items() if v is not None})


def cmd_submit(args: argparse.Namespace) -> int:
    from budgetprune.client import Client

    with Client(args.server, args.user_token) as client:
        job = client.submit(_spec_from_args(args))
        sys.stderr.write(f"submitted job {job.id}\n")
        if args.wait:
            job.wait(on_update=None if args.json else _progress, poll_s=1.0)
            sys.stderr.write("\n")
        status = job.status
    _emit(
        args,
        status.model_dump(mode="json"),
        f"{status.id} {status.state}" + (f": {status.error}" if status.error else ""),
    )
    return 0 if status.state in ("queued", "running", "succeeded") else 1


def cmd_status(args: argparse.Namespace) -> int:
    from budgetprune.client import Client

    with Client(args.server, args.user_token) as client:
        status = client.job(args.job).status
    text = (
        f"{status.id} {status.state} phase={status.phase} progress={status.progress:.0%}"
        f" measured={status.measured_ms} budget={status.budget_ms}"
        + (f"\nerror: {status.error}" if status.error else "")
    )
    _emit(args, status.model_dump(mode="json"), text)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from budgetprune.client import Client

    with Client(args.server, args.user_token) as client:
        job = client.job(args.job)
        out = job.download(args.output)
        files = sorted(p.name for p in out.iterdir())
    _emit(args, {"dir": str(out), "files": files}, f"{out}: {', '.join(files)}")
    return 0


# --- library path (no server) -------------------------------------------------------------------


def cmd_prune(args: argparse.Namespace) -> int:
    from budgetprune.config import get_settings
    from budgetprune.signing import CertificateSigner
    from worker.measurers import AnalyticalMeasurer, LocalMeasurer

    spec = _spec_from_args(args)
    if spec.fpga_profile:
        from latency_tables.fpga import PROFILES, profile_devices

        if spec.fpga_profile not in PROFILES:
            raise BudgetPruneError(
                f"no FPGA profile {spec.fpga_profile!r}; profiles: " + profile_devices()
            )
        measurer = AnalyticalMeasurer(spec.fpga_profile)
    elif spec.device == "cpu":
        measurer = LocalMeasurer(spec.runtime)
    else:
        raise BudgetPruneError(
            f"prune measures here: --device cpu or fpga:<profile>, not {spec.device!r} "
            "(submit to a server to target an agent)"
        )
    out = Path(args.out)

    def report(phase, progress, measured_ms=None, predicted_ms=None, budget_ms=None, training=None):
        if training is not None and training["step"] % 20 and training["step"] != training["steps"]:
            return  # a line every 20 training steps
        extra = " ".join(
            f"{k} {v:.2f} ms"
            for k, v in (
                ("measured", measured_ms),
                ("predicted", predicted_ms),
                ("budget", budget_ms),
            )
            if v is not None
        )
        if training is not None:
            extra += f" step {training['step']}/{training['steps']} loss {training['loss']:.3f}"
        sys.stderr.write(f"[{progress:4.0%}] {phase} {extra}\n")

    import torch

    from worker.pipeline import run_pipeline  # torch and timm: seconds, so after the checks

    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    result = run_pipeline(
        job_id="local-" + os.urandom(4).hex(),
        spec=spec,
        out_dir=out.resolve(),
        measurer=measurer,
        signer=CertificateSigner.load_or_create(get_settings().signing_key_path),
        report=report,
        device_label="local",
        tables_dir=get_settings().tables_dir,
    )
    cert = result.certificate
    _emit(
        args,
        {"dir": str(result.out_dir), "certificate": cert.model_dump(mode="json")},
        f"{result.out_dir}: certified p{cert.percentile} {cert.certified_ms:.2f} ms "
        f"<= budget {cert.budget_ms:.2f} ms",
    )
    return 0


def cmd_train_teacher(args: argparse.Namespace) -> int:
    from vitprune.teacher import train_teacher

    def log(entry) -> None:
        sys.stderr.write(
            f"step {entry.step}/{args.steps} loss {entry.loss:.4f} lr {entry.lr:.2e}\n"
        )

    summary = train_teacher(
        args.model,
        Path(args.dataset),
        Path(args.out),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_per_class=args.eval_per_class,
        workers=args.workers,
        on_log=log,
    )
    summary.pop("curve")
    _emit(
        args,
        summary,
        f"{args.out}/model.safetensors: top-1 {summary['top1']:.2%} on "
        f"{summary['val_images']} images",
    )
    return 0


def cmd_arch_sample(args: argparse.Namespace) -> int:
    from vitprune.sample import sample_arch

    spec = sample_arch(
        args.model, seed=args.seed, img_size=args.img_size, width_multiple=args.width_multiple
    )
    print(json.dumps(spec.model_dump(mode="json"), indent=None if args.json else 2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from budgetprune.schemas import load_arch
    from vitprune.export import export_onnx
    from vitprune.extract import extract_subnet
    from vitprune.importance import sort_by_magnitude_
    from vitprune.models import create_model

    spec = load_arch(Path(args.arch).read_text())
    if spec.model != args.model:
        raise BudgetPruneError(f"--model {args.model} but the arch spec is for {spec.model}")
    model = create_model(
        args.model, img_size=spec.img_size, num_classes=spec.num_classes, checkpoint=args.checkpoint
    ).eval()
    sort_by_magnitude_(model)
    sha = export_onnx(extract_subnet(model, spec).eval(), Path(args.out), img_size=spec.img_size)
    _emit(args, {"onnx": args.out, "sha256": sha}, f"{args.out} sha256={sha}")
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from budgetprune.schemas import MeasureProtocol
    from device_agents.fingerprint import local_fingerprint
    from device_agents.measure import measure

    protocol = MeasureProtocol(threads=args.threads, runs=args.runs, warmup=args.warmup)
    if args.mlperf:
        protocol = MeasureProtocol.mlperf_single_stream(args.threads)
    device = local_fingerprint(
        runtime=args.runtime, threads=args.threads, batch_size=protocol.batch_size, input_shape=[]
    )
    result = measure(Path(args.onnx), args.runtime, protocol, device)
    s = result.stats
    body = {
        "p50_ms": s.p50_ms,
        "p90_ms": s.p90_ms,
        "p99_ms": s.p99_ms,
        "runs": s.runs,
        "mean_ms": s.mean_ms,
        "stable": result.stable,
        "device": result.device.model_dump(),
        "protocol": result.protocol.model_dump(),
    }
    _emit(
        args,
        body,
        f"p50 {s.p50_ms:.3f} ms  p90 {s.p90_ms:.3f} ms  p99 {s.p99_ms:.3f} ms  "
        f"({s.runs} runs, {args.runtime}, {args.threads} threads, stable={result.stable})",
    )
    return 0


def cmd_tvm_tune(args: argparse.Namespace) -> int:
    """Fill this device's MetaSchedule database ahead of jobs, one model at a time; kernels
    already in the database are skipped, so a second model pays only for its new shapes."""
    import onnx

    from device_agents.runtimes.onnx_file import check_self_contained
    from device_agents.runtimes.tvm_tuning import prepare, tune

    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    reports = []
    for name in args.onnx:
        path = Path(name)
        check_self_contained(path)
        mod, target = prepare(onnx.load(str(path)), args.threads)
        report = tune(mod, target, Path(args.db), args.trials_per_task)
        reports.append({"model": str(path), **dataclasses.asdict(report)})
    text = "\n".join(
        f"{r['model']}: {len(r['new_tasks'])} new of {r['tasks']} tasks, {r['trials']} trials, "
        f"{r['seconds']:.0f} s; database holds {r['records']} records; untuned kernels: "
        f"{', '.join(r['untuned']) or 'none'}"
        for r in reports
    )
    _emit(args, {"db": args.db, "threads": args.threads, "models": reports}, text)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from budgetprune.client import Client
    from budgetprune.config import get_settings
    from budgetprune.signing import local_public_key
    from budgetprune.verify import verify_dir

    # Trust anchors, never the key inside the certificate: keys given by hand, the key a
    # server publishes, and this machine's own signing key (a local `prune` or server).
    anchors: dict[str, str] = dict.fromkeys(args.public_key or [], "--public-key")
    try:
        if args.server:
            with Client(args.server) as client:
                anchors.setdefault(client.signing_key().public_key, f"the key of {args.server}")
        local_path = get_settings().signing_key_path
        local = local_public_key(local_path)
        if local:
            anchors.setdefault(local, f"this machine's signing key ({local_path})")
        body = verify_dir(
            Path(args.dir), remeasure=args.remeasure, trusted_public_keys=list(anchors)
        )
    except BudgetPruneError as exc:
        _emit(args, {"ok": False, "error": str(exc)}, f"FAILED: {exc}")
        return 1
    body["trusted_by"] = anchors[body["public_key"]]
    text = (
        f"OK: signed with {body['trusted_by']}, model hash checks; certified "
        f"p{body['percentile']} {body['certified_ms']:.2f} ms <= budget {body['budget_ms']:.2f} ms"
    )
    if "remeasured" in body:
        r = body["remeasured"]
        text += f"\nre-measured here: {r}"
        if not r["within_budget"]:
            body["ok"] = False
    _emit(args, body, text)
    return 0 if body["ok"] else 1


# --- latency lookup tables ----------------------------------------------------------------------


def cmd_lut_build(args: argparse.Namespace) -> int:
    import torch

    from budgetprune.catalog import get_model_info
    from latency_tables.build import build_table
    from latency_tables.store import save_table
    from worker.measurers import LocalMeasurer

    torch.set_num_threads(1)  # export only; the measured runtime gets --threads
    img_size = args.img_size or get_model_info(args.model).img_size
    table = build_table(
        args.model,
        img_size,
        LocalMeasurer(args.runtime),
        args.threads,
        num_classes=args.num_classes,
        statistic=args.statistic,
        progress=lambda msg: sys.stderr.write(f"lut build: {msg}\n"),
    )
    path = save_table(table, Path(args.out))
    checks = [
        {"arch": p.arch.summary(), "measured_ms": p.measured_ms, "table_ms": p.table_ms}
        for p in table.whole_models
    ]
    body = {
        "table": str(path),
        "build_seconds": table.build_seconds,
        "measurements": table.measurements,
        "graph_bytes": table.graph_bytes,
        "device": table.device.model_dump(mode="json"),
        "drift_ratio": table.drift_ratio,
        "whole_models": checks,
    }
    _emit(
        args,
        body,
        f"{path}: {table.measurements} graphs ({table.graph_bytes / 2**20:.0f} MiB) in "
        f"{table.build_seconds:.0f} s; the reference "
        f"graph's readings moved {100 * (table.drift_ratio - 1):.1f}% during the build",
    )
    return 0


def cmd_lut_predict(args: argparse.Namespace) -> int:
    from budgetprune.schemas import load_arch

    spec = load_arch(Path(args.arch).read_text())
    if args.fpga:
        from latency_tables.fpga import estimate

        est = estimate(spec, args.fpga)
        body = {"latency_ms": est.latency_ms, **est.model_dump(mode="json", exclude={"latency_ms"})}
        _emit(
            args,
            body,
            f"{est.latency_ms:.3f} ms estimated (analytical profile {est.profile}, not measured)",
        )
        return 0
    from latency_tables.predictor import LutPredictor
    from latency_tables.store import load_table

    predictor = LutPredictor(load_table(Path(args.table)))
    ms = predictor.predict(spec)
    d = predictor.table.device
    body = {
        "latency_ms": ms,
        "statistic": predictor.table.statistic,
        "measured": False,
        "source": {
            "table": args.table,
            "cpu_model": d.cpu_model,
            "runtime": d.runtime,
            "runtime_version": d.runtime_version,
            "threads": d.threads,
        },
    }
    _emit(
        args,
        body,
        f"{ms:.3f} ms predicted ({predictor.table.statistic}, {d.runtime} "
        f"{d.runtime_version}, {d.threads} threads, {d.cpu_model})",
    )
    return 0


# --- parser -------------------------------------------------------------------------------------


def _job_args(p: argparse.ArgumentParser, *, server: bool) -> None:
    p.add_argument("--model", required=True)
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-ms", type=float)
    budget.add_argument(
        "--budget-fraction",
        type=float,
        help="fraction of the dense model's latency measured on the device",
    )
    p.add_argument("--runtime", default="onnxruntime")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--strategy", default="netadapt")
    p.add_argument("--img-size", type=int)
    p.add_argument("--num-classes", type=int)
    p.add_argument("--dataset", help="ImageFolder dir or zip (on the server for submit)")
    p.add_argument("--checkpoint", help="dense weights: .safetensors or .pt (weights only)")
    p.add_argument("--finetune-steps", type=int, help="distillation steps after pruning")
    p.add_argument(
        "--margin",
        type=float,
        help="certify at or under budget x (1 - margin) (default 0.05): headroom for a "
        "re-measure; raise it on a shared or throttling device",
    )
    p.add_argument(
        "--latency-table",
        help="a table from `lut build` to predict with, or 'auto' (the device's own, built "
        "once through its agent and reused)",
    )
    p.add_argument(
        "--certification",
        choices=["standard", "mlperf"],
        help="mlperf: time the baseline and the certificate by MLPerf Mobile's single-stream "
        "rule (at least 1024 queries and 60 s, p90)",
    )
    if server:
        p.add_argument("--device", default="cpu", help="device class, agent id, or fpga:<profile>")
    else:
        p.add_argument(
            "--device",
            default="cpu",
            help="cpu (this machine), or fpga:<profile> for an analytical FPGA profile "
            "(estimates, measured false): fpga:zcu102-int8, fpga:kv260-int8",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="budgetprune", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help: str, json_flag: bool = True, server: bool = False):
        p = sub.add_parser(name, help=help)
        p.set_defaults(func=func)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print one JSON object")
        if server:
            p.add_argument("--server", default=DEFAULT_SERVER)
            p.add_argument("--user-token", default=os.environ.get("BUDGETPRUNE_USER_TOKEN"))
        return p

    p = add("demo", cmd_demo, "the whole stack on the embedded default, one job")
    p.add_argument("--out", default="demo-out")
    p.add_argument("--model", default="deit_tiny_patch16_224")
    p.add_argument("--img-size", type=int)
    p.add_argument("--budget-fraction", type=float, default=0.6)

    p = add("serve", cmd_serve, "the API server", json_flag=False)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes on the port (one Python process serves about one core)",
    )

    p = add("worker", cmd_worker, "a Celery worker", json_flag=False)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--pool", default="solo")
    p.add_argument("--hostname")
    p.add_argument("--log-level", default="INFO")

    from device_agents.options import add_agent_options

    p = add("agent", cmd_agent, "a device agent daemon", json_flag=False)
    add_agent_options(p)

    p = add("submit", cmd_submit, "submit a job", server=True)
    _job_args(p, server=True)
    p.add_argument("--wait", action="store_true")

    p = add("status", cmd_status, "a job's status", server=True)
    p.add_argument("job")

    p = add("download", cmd_download, "a job's artifacts", server=True)
    p.add_argument("job")
    p.add_argument("-o", "--output", required=True)

    p = add("prune", cmd_prune, "the same job, locally, with no server")
    _job_args(p, server=False)
    p.add_argument("--out", required=True)

    lut = sub.add_parser("lut", help="latency lookup tables")
    lut_sub = lut.add_subparsers(dest="lut_cmd", required=True)
    p = lut_sub.add_parser("build", help="measure a latency lookup table on this machine")
    p.set_defaults(func=cmd_lut_build)
    p.add_argument("--model", required=True)
    p.add_argument("--runtime", default="onnxruntime")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="TABLE.json, or a directory (file named by key)")
    p.add_argument("--img-size", type=int)
    p.add_argument("--num-classes", type=int)
    p.add_argument(
        "--statistic",
        default="p50_ms",
        choices=["p50_ms", "p90_ms", "mean_ms", "min_ms"],
        help="what the table holds of each graph's runs (min_ms resists a busy machine)",
    )
    p.add_argument("--json", action="store_true")
    p = lut_sub.add_parser("predict", help="latency of an arch spec predicted from a table")
    p.set_defaults(func=cmd_lut_predict)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--table", help="a table measured with `lut build`")
    source.add_argument("--fpga", help="an analytical FPGA profile, e.g. zcu102-int8")
    p.add_argument("--arch", required=True)
    p.add_argument("--json", action="store_true")

    p = add("train-teacher", cmd_train_teacher, "train a dense teacher on a data set")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-per-class", type=int)
    p.add_argument("--workers", type=int, default=0)

    token = sub.add_parser("token", help="API tokens").add_subparsers(
        dest="token_cmd", required=True
    )
    p = token.add_parser("create", help="create a user and its API token (admins)")
    p.set_defaults(func=cmd_token_create)
    p.add_argument("--name", required=True)
    p.add_argument("--admin", action="store_true", help="sees every user's jobs")
    p.add_argument("--json", action="store_true")

    arch = sub.add_parser("arch", help="arch specs").add_subparsers(dest="arch_cmd", required=True)
    p = arch.add_parser("sample", help="a random valid arch spec")
    p.set_defaults(func=cmd_arch_sample)
    p.add_argument("--model", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--img-size", type=int)
    p.add_argument("--width-multiple", type=int, default=1)
    p.add_argument("--json", action="store_true")

    p = add("export", cmd_export, "export the sub-network of an arch spec to ONNX")
    p.add_argument("--model", required=True)
    p.add_argument("--arch", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint")

    p = add("measure", cmd_measure, "measure an ONNX file here")
    p.add_argument("onnx")
    p.add_argument("--runtime", default="onnxruntime")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--mlperf", action="store_true", help="MLPerf single-stream: 1024 runs, 60 s")

    p = add("tvm-tune", cmd_tvm_tune, "tune ONNX models into this device's TVM database")
    p.add_argument("onnx", nargs="+")
    p.add_argument("--db", required=True, help="the database folder (BUDGETPRUNE_TVM_DB_DIR)")
    p.add_argument("--trials-per-task", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="as the agent will time with")

    p = add("verify", cmd_verify, "check a certificate (and re-measure)")
    p.add_argument("dir")
    p.add_argument("--remeasure", action="store_true")
    p.add_argument(
        "--public-key", action="append", help="a trusted signer's public key (hex); repeatable"
    )
    p.add_argument(
        "--server", help="trust the key a server publishes (/.well-known/budgetprune-signing-key)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BudgetPruneError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": str(exc)}))
        sys.stderr.write(f"budgetprune: {exc}\n")
        return 2
    except ValueError as exc:  # pydantic validation of user input
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": f"invalid input: {exc}"}))
        sys.stderr.write(f"budgetprune: invalid input: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
