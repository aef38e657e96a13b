from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from budgetprune.errors import MeasurementError
from device_agents.errors import UnknownRuntimeError
from device_agents.runtimes import (
    Runtime,
    Session,
    available_runtimes,
    check_self_contained,
    get_runtime,
    register_runtime,
    registered_names,
)
from device_agents.runtimes import registry as registry_module


def test_onnxruntime_is_registered_and_available() -> None:
    import onnxruntime

    assert "onnxruntime" in registered_names()
    infos = {info.name: info.version for info in available_runtimes()}
    assert infos["onnxruntime"] == onnxruntime.__version__


def test_unknown_runtime_lists_the_available_ones() -> None:
    with pytest.raises(UnknownRuntimeError, match=r"'nope'.*available here: .*onnxruntime"):
        get_runtime("nope")
    assert issubclass(UnknownRuntimeError, MeasurementError)


def test_tvm_registers_only_where_importable() -> None:
    import importlib.util

    has_tvm = importlib.util.find_spec("tvm") is not None
    assert ("tvm" in registered_names()) == has_tvm


def test_register_refuses_a_second_class_under_one_name() -> None:
    class Dummy(Runtime):
        def version(self) -> str:
            return "0"

        def load(self, path: Path, threads: int) -> Session:
            raise NotImplementedError

    try:
        register_runtime("test-dummy")(Dummy)
        register_runtime("test-dummy")(Dummy)  # the same class again is harmless
        assert isinstance(get_runtime("test-dummy"), Dummy)

        class Other(Dummy):
            pass

        with pytest.raises(ValueError, match="already registered"):
            register_runtime("test-dummy")(Other)
    finally:
        registry_module._RUNTIMES.pop("test-dummy", None)
    assert "test-dummy" not in registered_names()


def test_unimportable_runtime_is_not_offered() -> None:
    class Missing(Runtime):
        module = "surely_not_an_installed_module_xyz"

        def version(self) -> str:
            return "0"

        def load(self, path: Path, threads: int) -> Session:
            raise NotImplementedError

    register_runtime("test-missing")(Missing)
    try:
        assert "test-missing" not in {i.name for i in available_runtimes()}
        with pytest.raises(UnknownRuntimeError, match="needs the module"):
            get_runtime("test-missing")
    finally:
        registry_module._RUNTIMES.pop("test-missing", None)


def test_onnxruntime_session_shape_dtype_and_run(tiny_onnx: Path, dynamic_onnx: Path) -> None:
    runtime = get_runtime("onnxruntime")
    session = runtime.load(tiny_onnx, threads=1)
    assert session.input_shape == (1, 16)
    assert session.input_dtype == np.float32
    assert session.run(np.zeros((1, 16), dtype=np.float32)) is None
    assert runtime.load(dynamic_onnx, threads=1).input_shape == (None, 16)


def test_external_data_is_refused(external_data_onnx: Path) -> None:
    assert (external_data_onnx.parent / "external.onnx.data").exists()
    with pytest.raises(MeasurementError, match="external data"):
        check_self_contained(external_data_onnx)
    with pytest.raises(MeasurementError, match="self-contained"):
        get_runtime("onnxruntime").load(external_data_onnx, threads=1)


def test_self_contained_file_passes(tiny_onnx: Path) -> None:
    assert check_self_contained(tiny_onnx) is True


def test_garbage_file_is_a_measurement_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file at all")
    with pytest.raises(MeasurementError):
        get_runtime("onnxruntime").load(bad, threads=1)


def test_external_data_pointing_outside_its_folder_is_refused_unread(tmp_path: Path) -> None:
    """The location is a path the file chooses: `../` would make the runtime read whatever
    the agent's user can read. It is refused before any runtime opens the file."""
    import onnx

    from tests.device_agents.conftest import make_linear_model

    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 4096)
    folder = tmp_path / "task"
    folder.mkdir()
    model = make_linear_model()
    for tensor in model.graph.initializer:
        onnx.external_data_helper.set_external_data(tensor, location="../secret.bin", offset=0)
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
    path = folder / "model.onnx"
    onnx.save_model(model, str(path))
    before = secret.stat().st_atime_ns
    with pytest.raises(MeasurementError, match="external data"):
        check_self_contained(path)
    with pytest.raises(MeasurementError, match="self-contained"):
        get_runtime("onnxruntime").load(path, threads=1)
    assert secret.stat().st_atime_ns == before, "the outside file was never opened"
