"""Both agent command lines (`budgetprune agent`, `python -m device_agents`) parse alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from budgetprune.cli import build_parser
from device_agents.__main__ import _parse

ARGS = ["--server", "http://h:1", "--token", "t", "--work-dir", "w", "--keep-models", "0"]


def test_both_command_lines_read_the_same_options():
    cli = vars(build_parser().parse_args(["agent", *ARGS]))
    alone = vars(_parse(ARGS))
    assert {k: cli[k] for k in alone} == alone
    assert alone["work_dir"] == Path("w") and alone["keep_models"] == 0


@pytest.mark.parametrize("parse", [lambda a: build_parser().parse_args(["agent", *a]), _parse])
def test_a_negative_model_count_is_a_usage_error(parse, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse([*ARGS[:-1], "-1"])
    assert exit_.value.code == 2
    assert "--keep-models takes 0 or more" in capsys.readouterr().err
