"""Image classification data: ImageFolder directories or zip files of them.

Zips are read in place, member by member, never extracted: no path in an untrusted archive can
reach the file system, and a zip bomb is refused from its central directory before any image is
decoded.
"""

from __future__ import annotations

import io
import random
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import transforms

from budgetprune.errors import BudgetPruneError
from budgetprune.filecheck import UnsafeFileError, check_zip_members

__all__ = [
    "DatasetError",
    "ZipImageFolder",
    "balanced_subset",
    "open_split",
    "eval_transform",
    "loader",
    "num_classes",
    "train_transform",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VAL_SPLITS = ("val", "test")

_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DatasetError(BudgetPruneError):
    pass


def eval_transform(img_size: int) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.Resize((img_size, img_size)),
            transforms.ToTensor(),
            transforms.Normalize(_MEAN, _STD),
        ]
    )


def train_transform(img_size: int) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.Resize((img_size, img_size)),
            transforms.RandomCrop(img_size, padding=max(img_size // 8, 1)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(_MEAN, _STD),
        ]
    )


class ZipImageFolder(Dataset):
    """`split/<class>/<image>` members of a zip, with classes in sorted order (as ImageFolder)."""

    def __init__(self, path: Path, split: str, transform=None) -> None:
        self.path = Path(path)
        self.transform = transform
        self._zip: zipfile.ZipFile | None = None
        with zipfile.ZipFile(self.path) as zf:
            infos = zf.infolist()
            _check_archive(infos)
            by_class: dict[str, list[str]] = defaultdict(list)
            for info in infos:
                parts = PurePosixPath(info.filename).parts
                if (
                    len(parts) == 3
                    and parts[0] == split
                    and not info.is_dir()
                    and parts[2].lower().endswith(IMAGE_SUFFIXES)
                ):
                    by_class[parts[1]].append(info.filename)
        if not by_class:
            raise DatasetError(f"{self.path} has no images under {split}/<class>/")
        self.classes = sorted(by_class)
        self.samples = [
            (name, label) for label, c in enumerate(self.classes) for name in sorted(by_class[c])
        ]
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        if self._zip is None:  # one handle per DataLoader worker process
            self._zip = zipfile.ZipFile(self.path)
        name, label = self.samples[index]
        with Image.open(io.BytesIO(self._zip.read(name))) as img:
            img = img.convert("RGB")
        return (self.transform(img) if self.transform else img), label

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_zip"] = None
        return state


def _check_archive(infos: Sequence[zipfile.ZipInfo]) -> None:
    try:
        check_zip_members(infos)
    except UnsafeFileError as exc:
        raise DatasetError(str(exc)) from None


def open_split(path: Path, split: str, img_size: int, train: bool = False) -> Dataset:
    """The `split` ("train", or "val"/"test": whichever exists) of a directory or zip."""
    transform = train_transform(img_size) if train else eval_transform(img_size)
    path = Path(path)
    candidates = (split,) if split == "train" else VAL_SPLITS
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            tops = {PurePosixPath(n).parts[0] for n in zf.namelist() if n.strip("/")}
        found = next((c for c in candidates if c in tops), None)
        if found is None:
            raise DatasetError(f"{path} has none of the folders {', '.join(candidates)}")
        return ZipImageFolder(path, found, transform)
    if path.is_dir():
        found = next((c for c in candidates if (path / c).is_dir()), None)
        if found is None:
            raise DatasetError(f"{path} has none of the folders {', '.join(candidates)}")
        from torchvision.datasets import ImageFolder

        return ImageFolder(str(path / found), transform=transform)
    raise DatasetError(f"data set {path} is neither an ImageFolder directory nor a zip of one")


def balanced_subset(dataset: Dataset, per_class: int, seed: int = 0) -> Subset:
    """`per_class` images of every class, the same ones for the same seed."""
    targets = list(dataset.targets)
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(targets):
        by_class[label].append(index)
    rng = random.Random(seed)
    chosen: list[int] = []
    for label in sorted(by_class):
        indices = by_class[label]
        chosen += rng.sample(indices, min(per_class, len(indices)))
    return Subset(dataset, sorted(chosen))


def num_classes(dataset: Dataset) -> int:
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    return len(base.classes)


def loader(dataset: Dataset, batch_size: int, shuffle: bool, workers: int = 0):
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
