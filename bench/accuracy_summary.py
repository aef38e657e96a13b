"""Issue 5's goal over several runs of `bench/accuracy_at_budget.py`: each strategy's top-1
against both baselines, paired within a run.

One run's rows differ from the next run's by more than most gaps between methods (two seeds
moved one row by 1.9 points, uniform by 4.7; bench/README.md), so a single column cannot say
whether a strategy is at or above a baseline. A run here is one results file and seed: every
method in it shares the teacher, the data, the host and the budget in ms, so its gap to the
baselines of the same run is the comparison; this averages those gaps over runs. The rows'
side-by-side ratios (p50 over the dense model's, timed together at the end of a run) go
beside them as a ratio to uniform's: a gap bought with more latency is not a win.

    .venv/bin/python bench/accuracy_summary.py \
        bench/results/accuracy_at_budget_2026-12-07_intel.json \
        bench/results/accuracy_at_budget_2026-12-07_amd.json --out bench/results/accuracy_summary.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

BASELINES = ("uniform", "torch_pruning")

Run = tuple[str, int]  # (results file, seed)


def paired_gaps(files: list[Path]) -> dict[tuple[float, str], dict[str, list[float]]]:
    """Per (budget fraction, method): its top-1 gap in points to each baseline of the same
    run, and its side-by-side time over uniform's, one entry per run that has both rows."""
    rows: dict[tuple[float, Run], dict[str, dict]] = defaultdict(dict)
    for path in files:
        for r in json.loads(path.read_text())["rows"]:
            if r.get("top1_after") is not None:
                rows[(r["budget_fraction"], (path.name, r.get("seed", 0)))][r["strategy"]] = r
    out: dict[tuple[float, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (fraction, _run), methods in rows.items():
        for method, row in methods.items():
            entry = out[(fraction, method)]
            entry["top1"].append(100 * row["top1_after"])
            for base in BASELINES:
                if base in methods and base != method:
                    entry[base].append(100 * (row["top1_after"] - methods[base]["top1_after"]))
            mine, theirs = row.get("side_by_side"), methods.get("uniform", {}).get("side_by_side")
            if mine and theirs:
                entry["time"].append(mine["p50_over_dense"] / theirs["p50_over_dense"])
    return out


def _gap(values: list[float]) -> str:
    if not values:
        return "-"
    worst = min(values)
    return f"{statistics.mean(values):+.2f} (worst {worst:+.2f})"


def _verdict(method: str, g: dict[str, list[float]]) -> str:
    if method in BASELINES:
        return "baseline"
    return "yes" if all(g[b] and statistics.mean(g[b]) >= 0 for b in BASELINES) else "no"


def markdown(files: list[Path]) -> str:
    gaps = paired_gaps(files)
    lines = [
        f"Runs: {', '.join(f.name for f in files)}",
        "",
        "| budget | method | runs | mean top-1 | over uniform: mean (worst) "
        "| over Torch-Pruning: mean (worst) | time over uniform's (side by side) "
        "| at or above both on the mean |",
        "|" + "---|" * 8,
    ]
    for (fraction, method), g in sorted(gaps.items()):
        time = f"{statistics.mean(g['time']):.3f}" if g["time"] else "-"
        verdict = _verdict(method, g)
        lines.append(
            f"| {fraction:.0%} | {method} | {len(g['top1'])} | {statistics.mean(g['top1']):.2f}% "
            f"| {_gap(g['uniform'])} | {_gap(g['torch_pruning'])} | {time} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="results of accuracy_at_budget.py")
    parser.add_argument("--out", type=Path, help="write the table here too")
    args = parser.parse_args()
    text = markdown(args.files)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
