from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from vitprune.export import export_onnx
from vitprune.extract import extract_subnet
from vitprune.sample import sample_arch


def _ort_matches(model: torch.nn.Module, path, x: torch.Tensor) -> float:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    (out,) = sess.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    return float(np.abs(out - ref).max())


@pytest.mark.parametrize(
    ("name", "pool", "prune"),
    [
        ("deit_tiny_patch16_224", None, False),
        ("deit_tiny_patch16_224", None, True),
        ("deit_tiny_distilled_patch16_224", None, True),
        ("vit_small_patch32_224", "avg", True),
    ],
)
def test_onnx_matches_torch(make_model, images, tmp_path, name, pool, prune) -> None:
    model = make_model(name, 64, 10, pool)
    if prune:
        spec = sample_arch(name, 11, img_size=64, num_classes=10, tokens=True, drop_prob=0.3)
        model = extract_subnet(model, spec)
    model.train()
    path = tmp_path / "m.onnx"
    digest = export_onnx(model, path, img_size=64)
    assert model.training  # restored
    model.eval()
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    proto = onnx.load(str(path), load_external_data=False)
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {17}
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # nothing on the side
    assert _ort_matches(model, path, images(1, 64, seed=3)) < 1e-4


@pytest.mark.slow
def test_pruned_export_compiles_in_tvm_and_matches(make_model, images, tmp_path) -> None:
    """The agent's TVM runtime (ONNX -> Relax -> LLVM, untuned) computes what PyTorch does on
    a pruned sub-network with fewer heads, narrower heads and token pruning."""
    pytest.importorskip("tvm")
    from device_agents.runtimes import get_runtime

    name = "deit_tiny_patch16_224"
    spec = sample_arch(name, 5, img_size=64, num_classes=10, tokens=True, drop_prob=0.3)
    assert spec.tokens and any(len(b.heads) < 3 for b in spec.blocks if b.attn)
    model = extract_subnet(make_model(name, 64, 10, None), spec).eval()
    path = tmp_path / "m.onnx"
    export_onnx(model, path, img_size=64)
    x = images(1, 64, seed=4)
    out = get_runtime("tvm").load(path, threads=1).infer(x.numpy())
    with torch.no_grad():
        ref = model(x).numpy()
    assert out.shape == ref.shape
    assert float(np.abs(out - ref).max()) < 1e-4
    assert _ort_matches(model, path, x) < 1e-4


@pytest.mark.slow
def test_dynamo_exporter_at_opset_18(make_model, images, tmp_path) -> None:
    spec = sample_arch("deit_tiny_patch16_224", 2, img_size=64, num_classes=10, tokens=True)
    model = extract_subnet(make_model("deit_tiny_patch16_224", 64, 10), spec)
    export_onnx(model, tmp_path / "m.onnx", img_size=64, opset=18)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {18}
    assert _ort_matches(model, tmp_path / "m.onnx", images(1, 64)) < 1e-4


def test_bad_opset_is_refused(tiny, tmp_path) -> None:
    with pytest.raises(ValueError, match="opset"):
        export_onnx(tiny, tmp_path / "m.onnx", img_size=32, opset=13)
    with pytest.raises(ValueError, match="dynamo"):
        export_onnx(tiny, tmp_path / "m.onnx", img_size=32, opset=17, exporter="dynamo")
