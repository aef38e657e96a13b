"""A tiny job for the fitting strategies: DeiT-Tiny at 32x32 (4 patches), 2 classes, synthetic
batches, a linear-in-MACs predictor pinned at 10 ms dense and 1 ms for nothing."""

from __future__ import annotations

import pytest
import torch

from budgetprune.schemas import ArchSpec
from latency_tables import LinearMacsPredictor
from vitprune.cost import macs
from vitprune.importance import dim_scores, head_scores, mlp_scores
from vitprune.strategies import SearchContext, TrainContext, expected_ms_fn

TINY = "deit_tiny_patch16_224"
DENSE_MS = 10.0


def predictor_for(dense: ArchSpec) -> LinearMacsPredictor:
    predictor = LinearMacsPredictor()
    predictor.restore([(0.0, 1.0), (macs(dense) / 1e9, DENSE_MS)])
    return predictor


def batches(n: int = 2, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two separable classes: bright and dark images."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        y = torch.randint(0, 2, (4,), generator=g)
        x = torch.randn(4, 3, 32, 32, generator=g) * 0.3 + (y.float() * 2 - 1).view(-1, 1, 1, 1)
        out.append((x, y))
    return out


@pytest.fixture
def job(make_model):
    """`job(steps=..., data=True, progress=...)` -> (TrainContext, predictor)."""

    def make(steps: int = 0, data: bool = True, progress=None):
        model = make_model(TINY, 32, 2)
        dense = ArchSpec.dense(TINY, img_size=32, num_classes=2)
        predictor = predictor_for(dense)
        search = SearchContext(
            dense=dense,
            head_scores=head_scores(model),
            dim_scores=dim_scores(model),
            mlp_scores=mlp_scores(model),
            predict_ms=predictor.predict,
        )
        ctx = TrainContext(
            search=search,
            model=model,
            teacher=make_model(TINY, 32, 2).eval(),
            train=batches() if data else None,
            steps=steps,
            lr=1e-3,
            expected_ms=expected_ms_fn(predictor),
            progress=progress or (lambda f, **kw: None),
        )
        return ctx, predictor

    return make


def assert_hard_form_is_extraction(fitted_model, arch: ArchSpec) -> None:
    """The returned weights, gated to `arch`, compute what `extract_subnet` of them computes."""
    from vitprune.extract import extract_subnet
    from vitprune.gates import make_gated

    x = batches(1, seed=7)[0][0]
    gated = make_gated(fitted_model, arch.model_copy(update={"tokens": None}), tokens=arch.tokens)
    gated.apply_spec(arch)
    gated.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            gated(x), extract_subnet(fitted_model, arch).eval()(x), atol=1e-4, rtol=1e-4
        )
