from __future__ import annotations

import os
from pathlib import Path

import onnxruntime

from device_agents.fingerprint import cpu_model, host_info, local_fingerprint


def test_cpu_model_from_x86_model_name(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) X\n")
    assert cpu_model(info, tmp_path / "none") == "Intel(R) Xeon(R) X"


def test_cpu_model_from_arm_hardware_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nCPU implementer\t: 0x41\n\nHardware\t: Qualcomm SM8250\n")
    assert cpu_model(info, tmp_path / "none") == "Qualcomm SM8250"


def test_cpu_model_from_device_tree(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nCPU part\t: 0xd08\n")
    tree = tmp_path / "model"
    tree.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert cpu_model(info, tree) == "Raspberry Pi 4 Model B Rev 1.4"


def test_cpu_model_without_proc_falls_back_to_platform(tmp_path: Path) -> None:
    assert cpu_model(tmp_path / "missing", tmp_path / "missing") not in ("",)


def test_local_fingerprint_fields() -> None:
    fp = local_fingerprint("onnxruntime", 2, 1, [1, 3, 224, 224], agent_id="a1")
    assert fp.agent_id == "a1"
    assert fp.cores == (os.cpu_count() or 1)
    assert fp.runtime_version == onnxruntime.__version__
    assert (fp.threads, fp.batch_size, fp.input_shape) == (2, 1, [1, 3, 224, 224])
    assert fp.measured is True
    assert fp.cpu_model == host_info().cpu_model != ""


def test_a_generic_x86_name_carries_its_generation(tmp_path: Path) -> None:
    """Two CPU generations behind one hypervisor name must not share tables or device keys."""
    info = tmp_path / "cpuinfo"
    info.write_text(
        "vendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
        "model name\t: AMD EPYC\nstepping\t: 1\n"
    )
    assert cpu_model(info, tmp_path / "none") == "AMD EPYC (family 26, model 2, stepping 1)"
