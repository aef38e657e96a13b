from __future__ import annotations

import json

import pytest

from budgetprune.catalog import get_model_info
from budgetprune.errors import InvalidArchError, UnsupportedModelError
from budgetprune.schemas import ArchSpec, JobCreate, MeasureProtocol, load_arch


def test_dense_spec_matches_catalog():
    spec = ArchSpec.dense("deit_small_patch16_224")
    assert len(spec.blocks) == 12
    assert spec.blocks[0].heads == list(range(6))
    assert spec.blocks[0].qk_dim == 64 and spec.blocks[0].mlp_hidden == 1536


def test_unknown_model_names_the_supported_ones():
    with pytest.raises(UnsupportedModelError, match="deit_tiny_patch16_224"):
        get_model_info("resnet50")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.update(heads=[0, 7]), "head indices"),
        (lambda b: b.update(heads=[]), "no head is"),
        (lambda b: b.update(qk_dim=65), "qk_dim"),
        (lambda b: b.update(mlp_hidden=0), "mlp_hidden"),
        (lambda b: b.update(heads=[1, 1]), "repeat"),
    ],
)
def test_bad_arch_specs_say_what_to_fix(mutate, message):
    body = ArchSpec.dense("deit_tiny_patch16_224").model_dump()
    mutate(body["blocks"][3])
    with pytest.raises(InvalidArchError, match=message):
        load_arch(json.dumps(body))


def test_dropped_branches_need_no_widths():
    body = ArchSpec.dense("deit_tiny_patch16_224").model_dump()
    body["blocks"][0] = {
        "attn": False,
        "heads": [],
        "qk_dim": 0,
        "v_dim": 0,
        "mlp": False,
        "mlp_hidden": 0,
    }
    spec = ArchSpec.model_validate(body)
    assert not spec.blocks[0].attn and spec.sha256() != ArchSpec.dense(spec.model).sha256()


def test_token_keep_ratio_range():
    body = ArchSpec.dense("deit_tiny_patch16_224").model_dump()
    body["tokens"] = {"keep": {"4": 1.5}}
    with pytest.raises(ValueError, match="keep ratio"):
        ArchSpec.model_validate(body)


def test_job_spec_examples():
    assert JobCreate(model="deit_tiny_patch16_224", budget_fraction=0.6).margin == 0.05
    with pytest.raises(ValueError):
        JobCreate(model="deit_tiny_patch16_224", budget_fraction=1.5)


@pytest.mark.parametrize("name", ["quick", "certify", "mlperf_single_stream"])
def test_every_whole_model_protocol_times_at_least_200_runs(name):
    """The measuring loop always runs two batches unless max_batches is 1 (MLPerf's rule,
    which has its own 1024-query floor)."""
    p = getattr(MeasureProtocol, name)()
    assert p.runs * min(2, p.max_batches) >= 200


def test_mlperf_certification_needs_the_90th_percentile():
    with pytest.raises(ValueError, match="90th percentile"):
        JobCreate(model="deit_tiny_patch16_224", budget_ms=5, certification="mlperf", percentile=99)
