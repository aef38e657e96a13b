"""`python -m device_agents`: the agent daemon without the budgetprune CLI.

For phones and boards that carry only device_agents and budgetprune's schemas (docs/agents.md);
the same options as `budgetprune agent`.
"""

from __future__ import annotations

import argparse
import sys

from device_agents.daemon import main
from device_agents.options import add_agent_options


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m device_agents", description=__doc__)
    add_agent_options(p)
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
