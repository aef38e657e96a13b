from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from vitprune.data import DatasetError, balanced_subset, open_split

CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg.zip"


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="JPEG")
    return buf.getvalue()


def _zip(path: Path, members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_image_folder_reads_in_place(tmp_path):
    members = {
        f"train/{c}/{i}.jpg": _jpeg((i * 40, 0, 0)) for c in ("cat", "dog") for i in range(3)
    }
    members |= {f"test/{c}/0.jpg": _jpeg((0, 0, 0)) for c in ("cat", "dog")}
    z = _zip(tmp_path / "d.zip", members)
    train = open_split(z, "train", img_size=16, train=True)
    assert train.classes == ["cat", "dog"] and len(train) == 6
    x, y = train[5]
    assert tuple(x.shape) == (3, 16, 16) and y == 1
    val = open_split(z, "val", img_size=16)  # falls back to test/
    assert len(val) == 2


@pytest.mark.parametrize("name", ["../escape/x.jpg", "train/../../etc/passwd.jpg", "/abs.jpg"])
def test_zip_with_escaping_paths_is_refused(tmp_path, name):
    members = {"train/a/0.jpg": _jpeg((0, 0, 0)), name: _jpeg((1, 1, 1))}
    z = _zip(tmp_path / "d.zip", members)
    with pytest.raises(DatasetError, match="outside the archive"):
        open_split(z, "train", img_size=8)
    assert not (tmp_path.parent / "escape").exists()


def test_zip_bomb_is_refused(tmp_path):
    bomb = _zip(tmp_path / "b.zip", {"train/a/x.jpg": b"\0" * 5_000_000}, zipfile.ZIP_DEFLATED)
    with pytest.raises(DatasetError, match="zip bomb"):
        open_split(bomb, "train", img_size=8)


def test_missing_split_says_what_is_expected(tmp_path):
    z = _zip(tmp_path / "d.zip", {"other/a/x.jpg": _jpeg((0, 0, 0))})
    with pytest.raises(DatasetError, match="val, test"):
        open_split(z, "val", img_size=8)
    with pytest.raises(DatasetError, match="neither"):
        open_split(tmp_path / "nope", "train", img_size=8)


def test_directory_image_folder(tmp_path):
    for c in ("a", "b"):
        (tmp_path / "val" / c).mkdir(parents=True)
        for i in range(2):
            (tmp_path / "val" / c / f"{i}.jpg").write_bytes(_jpeg((i, i, i)))
    ds = open_split(tmp_path, "val", img_size=8)
    assert len(ds) == 4 and ds.classes == ["a", "b"]


@pytest.mark.skipif(not CIFAR.exists(), reason="shared CIFAR-10 zip not present")
def test_cifar_balanced_subset_is_fixed():
    test = open_split(CIFAR, "test", img_size=32)
    assert len(test) == 10_000 and len(test.classes) == 10
    a, b = balanced_subset(test, 5, seed=1), balanced_subset(test, 5, seed=1)
    assert a.indices == b.indices and len(a) == 50
    assert sorted(test.targets[i] for i in a.indices) == sorted(list(range(10)) * 5)
