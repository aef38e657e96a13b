"""What a dense checkpoint of a catalog model must hold, checked without torch.

The API refuses a checkpoint that cannot fit the job's model at submission (422 naming the
tensors) instead of letting a worker find out minutes later. The names and shapes are timm's
VisionTransformer state dict for the catalog's shapes; `tests/budgetprune/test_checkpoints.py`
compares them with the state dict timm really builds, for every model in the catalog.
"""

from __future__ import annotations

from pathlib import Path

from budgetprune.catalog import ModelInfo
from budgetprune.filecheck import UnsafeFileError, safetensors_header

__all__ = ["FLOAT_DTYPES", "CheckpointMismatch", "expected_shapes", "check_checkpoint_fits"]

# Weights in any float format load (converted to float32); integer or bool tensors are not
# weights of these models and would be silently wrong after a cast.
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})


class CheckpointMismatch(UnsafeFileError):
    pass


def expected_shapes(info: ModelInfo, img_size: int, num_classes: int) -> dict[str, tuple[int, ...]]:
    d, h, p = info.embed_dim, info.mlp_hidden, info.patch_size
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, info.num_patches(img_size) + info.num_prefix_tokens, d),
        "patch_embed.proj.weight": (d, 3, p, p),
        "patch_embed.proj.bias": (d,),
        "norm.weight": (d,),
        "norm.bias": (d,),
    }
    if info.num_prefix_tokens > 1:
        shapes["dist_token"] = (1, 1, d)
    for i in range(info.depth):
        b = f"blocks.{i}"
        shapes |= {
            f"{b}.norm1.weight": (d,),
            f"{b}.norm1.bias": (d,),
            f"{b}.attn.qkv.weight": (3 * d, d),
            f"{b}.attn.qkv.bias": (3 * d,),
            f"{b}.attn.proj.weight": (d, d),
            f"{b}.attn.proj.bias": (d,),
            f"{b}.norm2.weight": (d,),
            f"{b}.norm2.bias": (d,),
            f"{b}.mlp.fc1.weight": (h, d),
            f"{b}.mlp.fc1.bias": (h,),
            f"{b}.mlp.fc2.weight": (d, h),
            f"{b}.mlp.fc2.bias": (d,),
        }
    heads = ("head", "head_dist") if info.num_prefix_tokens > 1 else ("head",)
    for head in heads:
        if num_classes > 0:
            shapes[f"{head}.weight"] = (num_classes, d)
            shapes[f"{head}.bias"] = (num_classes,)
    return shapes


def check_checkpoint_fits(path: Path, info: ModelInfo, img_size: int, num_classes: int) -> None:
    """Raise CheckpointMismatch naming what does not fit. Only safetensors headers can be read
    without unpickling; a .pt archive is checked the same way by the worker when it loads it
    (`vitprune.models.load_checkpoint`)."""
    header = safetensors_header(path)
    want = expected_shapes(info, img_size, num_classes)
    have = {name: tuple(meta["shape"]) for name, meta in header.items()}
    problems = []
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    if missing:
        problems.append(f"missing tensors {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_few(unexpected)}")
    wrong = [
        f"{k} {list(have[k])} (the model needs {list(want[k])})"
        for k in sorted(set(want) & set(have))
        if have[k] != want[k] and not _resampled_pos_embed(k, have[k], want[k])
    ]
    if wrong:
        problems.append(f"wrong shapes {_few(wrong)}")
    dtypes = [f"{k} {meta['dtype']}" for k, meta in sorted(header.items())]
    bad = [d for d in dtypes if d.rsplit(" ", 1)[1] not in FLOAT_DTYPES]
    if bad:
        problems.append(f"tensors that are not floating point {_few(bad)}")
    if problems:
        raise CheckpointMismatch(
            f"the checkpoint does not fit {info.name} at img_size {img_size} with "
            f"{num_classes} classes: " + "; ".join(problems)
        )


def _resampled_pos_embed(name: str, have: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """A position embedding for another image size is resampled to the job's grid."""
    return name == "pos_embed" and len(have) == 3 and have[-1] == want[-1] and have[0] == 1


def _few(items: list[str], n: int = 5) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
