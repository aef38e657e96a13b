"""Random valid arch specs, for tests, benchmarks and `budgetprune arch sample`.

Each spec first draws its own overall keep level, then draws every block around it, so a batch
of seeds covers tiny to nearly dense sub-networks rather than clustering at half size (the mean
of independent per-unit draws). Torch-free and seeded: the same seed gives the same spec.
"""

from __future__ import annotations

import math
import random

from budgetprune.catalog import get_model_info
from budgetprune.schemas.arch import ArchSpec, BlockSpec, TokenSpec
from vitprune.rounding import round_spec

__all__ = ["sample_arch"]


def sample_arch(
    model: str,
    seed: int,
    img_size: int | None = None,
    num_classes: int | None = None,
    width_multiple: int = 1,
    *,
    tokens: bool = False,
    drop_prob: float = 0.1,
    level: float | None = None,
) -> ArchSpec:
    """A random sub-network of `model`; widths are multiples of `width_multiple` (or full).

    `tokens=True` also draws token keep ratios at one to three blocks; `drop_prob` is the chance
    that a block loses its attention (or its MLP) branch; `level` fixes the overall keep level
    instead of drawing it.
    """
    info = get_model_info(model)
    rng = random.Random(seed)
    drawn = rng.uniform(0.05, 1.0)  # drawn either way: a seed's specs stay what they were
    level = drawn if level is None else level

    def width(full: int) -> int:
        frac = min(1.0, max(0.0, rng.gauss(level, 0.2)))
        return max(1, min(full, math.ceil(frac * full)))

    blocks = []
    for _ in range(info.depth):
        attn = rng.random() >= drop_prob
        mlp = rng.random() >= drop_prob
        n_heads = width(info.num_heads)
        heads = sorted(rng.sample(range(info.num_heads), n_heads)) if attn else []
        blocks.append(
            BlockSpec(
                attn=attn,
                heads=heads,
                qk_dim=width(info.head_dim) if attn else 0,
                v_dim=width(info.head_dim) if attn else 0,
                mlp=mlp,
                mlp_hidden=width(info.mlp_hidden) if mlp else 0,
            )
        )
    token_spec = None
    if tokens:
        where = sorted(rng.sample(range(info.depth), rng.randint(1, 3)))
        ratio, keep = 1.0, {}
        for b in where:
            ratio *= rng.uniform(0.3, 0.95)
            keep[b] = round(ratio, 3) or 0.001
        token_spec = TokenSpec(keep=keep, package_token=rng.random() < 0.8)
    spec = ArchSpec(
        model=model,
        img_size=img_size or info.img_size,
        num_classes=info.num_classes if num_classes is None else num_classes,
        blocks=blocks,
        tokens=token_spec,
    )
    return round_spec(spec, width_multiple) if width_multiple > 1 else spec
