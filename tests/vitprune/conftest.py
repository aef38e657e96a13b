"""Engine test helpers: one thread (the machine is shared) and small, cached models.

Models are built at img_size 32 (4 patches) or 64 (16 patches) so property tests run many specs
in seconds; the structure under test (heads, dims, neurons, tokens) does not depend on the image.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch

torch.set_num_threads(1)

TINY = "deit_tiny_patch16_224"
TINY_DISTILLED = "deit_tiny_distilled_patch16_224"


@functools.lru_cache(maxsize=8)
def _sorted_model(name: str, img_size: int, num_classes: int, global_pool: str | None):
    from vitprune.importance import sort_by_magnitude_
    from vitprune.models import create_model

    torch.manual_seed(0)
    model = create_model(name, img_size=img_size, num_classes=num_classes, global_pool=global_pool)
    _spread_weights_(model)
    sort_by_magnitude_(model)
    return model


@torch.no_grad()
def _spread_weights_(model: torch.nn.Module) -> None:
    """timm's init gives every row nearly the same norm and zero biases; scale rows and set
    biases at random so that sorting, masking and dropped units really change the outputs."""
    g = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            scale = torch.rand(module.out_features, 1, generator=g) * 2 + 0.1
            module.weight.mul_(scale * 4)
            if module.bias is not None:
                module.bias.copy_(torch.randn(module.out_features, generator=g) * 0.1)


def sorted_model(
    name: str = TINY, img_size: int = 32, num_classes: int = 10, global_pool: str | None = None
) -> torch.nn.Module:
    """A fresh copy of a cached, importance-sorted random model (tests may modify it)."""
    return copy.deepcopy(_sorted_model(name, img_size, num_classes, global_pool))


@pytest.fixture(scope="session")
def make_model():
    """`make_model(name, img_size, num_classes, global_pool)`: a fresh copy of a cached,
    importance-sorted model with spread-out random weights (session-scoped, so hypothesis
    tests can use it)."""
    return sorted_model


@pytest.fixture
def tiny() -> torch.nn.Module:
    """deit_tiny at img_size 32 with 10 classes, sorted; a fresh copy per test."""
    return sorted_model()


@pytest.fixture(scope="session")
def images():
    """`images(n, img_size, seed)`: a deterministic random batch."""

    def make(n: int = 2, img_size: int = 32, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, 3, img_size, img_size, generator=g)

    return make
