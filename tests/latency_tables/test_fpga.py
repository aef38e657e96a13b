"""The analytical FPGA profile: its calibration point, monotonicity, and that it never claims
to be a measurement."""

from __future__ import annotations

import pytest

from budgetprune.schemas import ArchSpec, TokenSpec
from latency_tables.fpga import (
    CALIBRATION_POINTS,
    PROFILES,
    arch_matmuls,
    calibrate,
    estimate,
    estimate_onnx,
    get_profile,
)
from vitprune.cost import macs
from vitprune.sample import sample_arch

from .conftest import TINY

BASE = "deit_base_patch16_224"


def test_zcu102_reproduces_its_published_calibration_point():
    model, ms = CALIBRATION_POINTS["zcu102-int8"]
    assert (model, ms) == (BASE, pytest.approx(1000 / 24))  # VAQF: DeiT-base, 24 FPS
    assert estimate(ArchSpec.dense(BASE), "zcu102-int8").latency_ms == pytest.approx(ms, rel=1e-3)
    assert 0 < get_profile("zcu102-int8").utilisation < 1


def test_estimates_say_they_are_not_measured_and_name_the_profile():
    est = estimate(ArchSpec.dense(TINY), "kv260-int8")
    body = est.model_dump()
    assert body["measured"] is False and body["profile"] == "kv260-int8"
    assert "uncalibrated" in body["parameters"]["calibration"]
    fp = get_profile("zcu102-int8").fingerprint()
    assert fp.measured is False and fp.device_class == "fpga"
    assert fp.runtime == "analytical:zcu102-int8"


@pytest.mark.parametrize("seed", range(5))
def test_arch_matmuls_count_exactly_the_engines_macs(seed):
    spec = sample_arch(TINY, seed=seed, tokens=True)
    assert sum(s.macs for s in arch_matmuls(spec)) == macs(spec)


def _shrink(spec: ArchSpec, what: str) -> ArchSpec:
    s = spec.model_copy(deep=True)
    blk = s.blocks[4]
    if what == "heads":
        blk.heads = blk.heads[:1]
    elif what == "qk":
        blk.qk_dim = 16
    elif what == "v":
        blk.v_dim = 16
    elif what == "mlp":
        blk.mlp_hidden = 256
    elif what == "drop":
        blk.mlp, blk.mlp_hidden = False, 0
    else:
        s.tokens = TokenSpec(keep={4: 0.5})
    return ArchSpec.model_validate(s.model_dump())


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("what", ["heads", "qk", "v", "mlp", "drop", "tokens"])
def test_less_work_is_never_slower(profile, what):
    dense = ArchSpec.dense("deit_small_patch16_224")
    assert estimate(_shrink(dense, what), profile).latency_ms < estimate(dense, profile).latency_ms


@pytest.mark.parametrize(
    "faster", [{"clock_mhz": 300.0}, {"bandwidth_gbs": 100.0}, {"pe_macs_per_cycle": 8192}]
)
def test_a_faster_board_is_never_slower(faster):
    p = get_profile("kv260-int8")
    spec = ArchSpec.dense(TINY)
    assert estimate(spec, p.model_copy(update=faster)).latency_ms <= estimate(spec, p).latency_ms


def test_calibrate_hits_any_reachable_target_and_refuses_an_impossible_one():
    p = get_profile("kv260-int8")
    spec = ArchSpec.dense(TINY)
    fitted = calibrate(p, spec, 20.0)
    assert estimate(spec, fitted).latency_ms == pytest.approx(20.0, rel=1e-3)
    with pytest.raises(ValueError, match="cannot reach"):
        calibrate(p, spec, 0.01)


def test_onnx_path_matches_the_arch_path(tmp_path):
    from vitprune.export import export_onnx
    from vitprune.extract import extract_subnet
    from vitprune.models import create_model

    spec = sample_arch(TINY, seed=3, img_size=64, tokens=True)
    path = tmp_path / "m.onnx"
    export_onnx(extract_subnet(create_model(TINY, img_size=64), spec), path, img_size=64)
    from_arch = estimate(spec, "zcu102-int8")
    from_onnx = estimate_onnx(path, "zcu102-int8")
    assert from_onnx.latency_ms == pytest.approx(from_arch.latency_ms, rel=0.05)
    # The graph also has the final norm and the token selector's softmax: a little more.
    assert from_onnx.nonlinear_ms == pytest.approx(from_arch.nonlinear_ms, rel=0.05)
    assert from_onnx.nonlinear_ms >= from_arch.nonlinear_ms
    assert from_onnx.measured is False
