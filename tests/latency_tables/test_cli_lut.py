"""`budgetprune lut build` and `lut predict` (contracts.md section 1)."""

from __future__ import annotations

import json

import pytest

from budgetprune.cli import main
from budgetprune.schemas import ArchSpec
from latency_tables import LutPredictor, load_table, save_table

from .conftest import SMALL_GRID, TINY, MacsMeasurer


def test_lut_predict_prints_one_json_object(macs_table, tmp_path, capsys):
    table = save_table(macs_table, tmp_path / "table.json")
    spec = ArchSpec.dense(TINY, 64)
    arch = tmp_path / "arch.json"
    arch.write_text(spec.model_dump_json())
    assert main(["lut", "predict", "--table", str(table), "--arch", str(arch), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["latency_ms"] == pytest.approx(LutPredictor(macs_table).predict(spec))
    assert body["measured"] is False and body["source"]["runtime"] == "fake"


def test_lut_predict_refuses_a_spec_of_another_size(macs_table, tmp_path, capsys):
    table = save_table(macs_table, tmp_path / "table.json")
    arch = tmp_path / "arch.json"
    arch.write_text(ArchSpec.dense(TINY, 32).model_dump_json())
    assert main(["lut", "predict", "--table", str(table), "--arch", str(arch), "--json"]) != 0
    assert "lut build" in capsys.readouterr().err


def test_lut_build_measures_here_and_writes_the_table(tmp_path, capsys, monkeypatch):
    import latency_tables.build
    import worker.measurers

    monkeypatch.setattr(worker.measurers, "LocalMeasurer", lambda runtime: MacsMeasurer())
    monkeypatch.setattr(latency_tables.build, "TableGrid", lambda: SMALL_GRID)
    out = tmp_path / "t.json"
    argv = ["lut", "build", "--model", TINY, "--runtime", "onnxruntime", "--threads", "1"]
    assert main([*argv, "--img-size", "64", "--out", str(out), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    table = load_table(out)
    assert body["table"] == str(out) and body["measurements"] == table.measurements
    assert (table.model, table.img_size, table.device.cpu_model) == (TINY, 64, "fake-cpu")
    assert len(body["whole_models"]) == 2 + SMALL_GRID.whole_models
    assert body["drift_ratio"] == table.drift_ratio == 1.0  # a device that never drifts


def test_lut_predict_with_an_fpga_profile_says_it_is_not_measured(tmp_path, capsys):
    arch = tmp_path / "arch.json"
    arch.write_text(ArchSpec.dense("deit_base_patch16_224").model_dump_json())
    assert main(["lut", "predict", "--fpga", "zcu102-int8", "--arch", str(arch), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["latency_ms"] == pytest.approx(1000 / 24, rel=1e-3)
    assert body["measured"] is False and body["profile"] == "zcu102-int8"
