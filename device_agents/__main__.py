"""`python -m device_agents`: the agent daemon without the budgetprune CLI.

For phones and boards that carry only device_agents and budgetprune's schemas (docs/agents.md);
the same options as `budgetprune agent`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from device_agents.daemon import main
from device_agents.model_cache import add_keep_models


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m device_agents", description=__doc__)
    p.add_argument("--server", required=True, help="API base URL, e.g. http://10.0.0.5:8000")
    p.add_argument("--token", default=os.environ.get("BUDGETPRUNE_AGENT_TOKEN"))
    p.add_argument("--name", default=platform.node() or "agent")
    p.add_argument("--device-class", default="cpu", choices=["cpu", "mobile", "fpga"])
    p.add_argument("--work-dir", type=Path, default=Path.home() / ".budgetprune-agent")
    add_keep_models(p)
    return p.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if not args.token:
        print("give the agent token: --token T or BUDGETPRUNE_AGENT_TOKEN", file=sys.stderr)
        return 2
    return main(
        args.server, args.token, args.name, args.device_class, args.work_dir, args.keep_models
    )


if __name__ == "__main__":
    sys.exit(run())
