"""Uploads of hostile and honest files: refused with a clear 4xx, or kept for the job."""

from __future__ import annotations

import collections
import io
import json
import math
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from utils.agents import register_agent, user_headers  # noqa: E402

from budgetprune.catalog import get_model_info  # noqa: E402
from budgetprune.checkpoints import expected_shapes  # noqa: E402


class _Evil:
    def __reduce__(self):
        return (open, ("/tmp/budgetprune-pwned", "w"))


def _safetensors(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    header, blob, offset = {}, b"", 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [offset, offset + len(data)],
        }
        blob += data
        offset += len(data)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + blob


def _fitting(model: str) -> tuple[bytes, dict[str, tuple[int, ...]]]:
    """A zero-filled safetensors file with every tensor `model` needs (catalog defaults)."""
    info = get_model_info(model)
    shapes = expected_shapes(info, info.img_size, info.num_classes)
    return _safetensors(
        {k: ("F32", list(v), b"\0" * (4 * math.prod(v))) for k, v in shapes.items()}
    ), shapes


def _zip(members: dict[str, bytes], method=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _upload(client, name: str, data: bytes):
    return client.post(
        "/v1/uploads",
        params={"name": name},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )


def _files(settings) -> list[str]:
    root = settings.uploads_dir
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("evil.pt", pickle.dumps(_Evil()), "legacy pickle files are refused"),
        ("evil.pth", _zip({"archive/other.txt": b"x"}), "no data.pkl"),
        (
            "code.pt",  # a torch.save archive whose pickle runs open() on load
            _zip({"archive/data.pkl": pickle.dumps({"w": _Evil()}, protocol=2)}),
            "imports io open",
        ),
        (
            "code4.pt",  # protocol 4 names it with STACK_GLOBAL, from strings on the stack
            _zip({"archive/data.pkl": pickle.dumps({"w": _Evil()}, protocol=4)}),
            "imports io open",
        ),
        ("garbled.pt", _zip({"archive/data.pkl": b"\x80\x02\xff"}), "malformed"),
        ("bad.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{}", "header"),
        ("bad.safetensors", _safetensors({"w": ("F32", [4], b"\0" * 8)}), "8 bytes for shape [4]"),
        (
            "escape.zip",
            _zip({"train/a/x.jpg": b"x", "../../etc/cron.d/x": b"x", "val/a/y.jpg": b"y"}),
            "points outside the archive",
        ),
        (
            "bomb.zip",
            _zip({"train/a/x.jpg": b"\0" * 3_000_000, "val/a/x.jpg": b"x"}, zipfile.ZIP_DEFLATED),
            "zip bomb",
        ),
        ("nosplits.zip", _zip({"images/a.jpg": b"x"}), "needs train/ and val/"),
        ("model.exe", b"MZ", "unsupported file type"),
        ("empty.safetensors", b"", "empty"),
    ],
)
def test_hostile_files_are_refused_and_nothing_is_kept(client, settings, name, data, message):
    r = _upload(client, name, data)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    assert _files(settings) == []
    assert not Path("/tmp/budgetprune-pwned").exists()


def test_oversized_upload_is_413(client, settings):
    settings.max_upload_bytes = 1000
    r = _upload(client, "big.safetensors", b"\0" * 2000)
    assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]
    assert _files(settings) == []


def test_a_torch_archive_of_tensors_and_containers_is_kept(client, settings):
    state = collections.OrderedDict(step=3, lr=0.1)  # names collections.OrderedDict only
    r = _upload(client, "ok.pt", _zip({"archive/data.pkl": pickle.dumps(state, protocol=2)}))
    assert r.status_code == 201, r.text


def test_good_checkpoint_is_kept_and_usable_only_by_its_owner(client, settings):
    register_agent(client)
    data, _ = _fitting("deit_tiny_patch4_32")
    r = _upload(client, "../../w.safetensors", data)
    assert r.status_code == 201, r.text
    body = r.json()
    path = Path(body["path"])
    assert path.is_relative_to(settings.uploads_dir.resolve()) and path.read_bytes() == data
    assert body["kind"] == "checkpoint" and body["bytes"] == len(data)
    job = {"model": "deit_tiny_patch4_32", "budget_ms": 5, "checkpoint": body["path"]}
    assert client.post("/v1/jobs", json=job).status_code == 202
    bob = user_headers(settings, "bob")
    r = client.post("/v1/jobs", json=job, headers=bob)
    assert r.status_code == 422 and "data roots" in r.json()["detail"]


def test_uploads_need_a_token(client):
    r = client.post(
        "/v1/uploads", params={"name": "a.zip"}, content=b"x", headers={"Authorization": ""}
    )
    assert r.status_code == 401


def test_a_checkpoint_that_does_not_fit_the_model_is_refused_at_submission(client, settings):
    """Shapes and dtypes come from the safetensors header: no torch in the API, no worker
    minutes spent finding out."""
    register_agent(client)
    _, shapes = _fitting("deit_tiny_patch4_32")
    tensors = {k: ("F32", list(v), b"\0" * (4 * math.prod(v))) for k, v in shapes.items()}
    wrong = tensors | {"head.weight": ("F32", [7, 192], b"\0" * 4 * 7 * 192)}
    ints = tensors | {"norm.weight": ("I32", [192], b"\0" * 4 * 192)}
    partial = {"w": ("F32", [2], b"\0" * 8)}
    cases = [
        (wrong, "head.weight [7, 192] (the model needs [10, 192])"),
        (ints, "not floating point norm.weight I32"),
        (partial, "missing tensors"),
    ]
    for tensors_, message in cases:
        path = _upload(client, "c.safetensors", _safetensors(tensors_)).json()["path"]
        job = {"model": "deit_tiny_patch4_32", "budget_ms": 5, "checkpoint": path}
        r = client.post("/v1/jobs", json=job)
        assert r.status_code == 422 and message in r.json()["detail"], r.text
    assert client.get("/v1/jobs").json()["count"] == 0
