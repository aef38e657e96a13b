"""The agent daemon's command-line options, shared by `budgetprune agent` and `python -m
device_agents` (a phone carries only the second): one list, so the two cannot drift apart."""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

__all__ = ["add_agent_options"]


def add_agent_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, help="API base URL, e.g. http://10.0.0.5:8000")
    parser.add_argument(
        "--token",
        default=os.environ.get("BUDGETPRUNE_AGENT_TOKEN"),
        help="agent token (default: $BUDGETPRUNE_AGENT_TOKEN)",
    )
    parser.add_argument("--name", default=platform.node() or "agent")
    parser.add_argument("--device-class", default="cpu", choices=["cpu", "mobile", "fpga"])
    parser.add_argument("--work-dir", type=Path, default=Path.home() / ".budgetprune-agent")
    parser.add_argument(
        "--keep-models",
        type=_keep_count,
        default=2,
        help="downloaded models kept for later tasks (a table build times the dense model "
        "between all others)",
    )


def _keep_count(text: str) -> int:
    """How many downloaded models to keep, 0 for none."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"--keep-models takes 0 or more, not {text!r}")
    return value
