"""Backend selection: MINIMENET_DEVICE, and importing without CuPy or a GPU."""
import os
import subprocess
import sys

import pytest

from minimenet import backend


def import_minimenet(device):
    env = {k: v for k, v in os.environ.items() if k != "MINIMENET_DEVICE"}
    if device is not None:
        env["MINIMENET_DEVICE"] = device
    return subprocess.run([sys.executable, "-c", "import minimenet; print(minimenet.device, minimenet.xp.__name__)"],
                          capture_output=True, text=True, env=env, timeout=120)


def test_forcing_cpu_selects_numpy():
    result = import_minimenet("cpu")
    assert result.returncode == 0 and result.stdout.split() == ["cpu", "numpy"]


def test_an_unknown_device_is_named():
    result = import_minimenet("tpu")
    assert result.returncode != 0 and "MINIMENET_DEVICE='tpu' is not understood: use 'cpu' or 'gpu'" in result.stderr


@pytest.mark.skipif(backend.device == "gpu", reason="this machine has a usable GPU, so forcing gpu succeeds")
def test_forcing_gpu_without_one_names_the_cause_and_unset_import_falls_back():
    forced = import_minimenet("gpu")
    assert forced.returncode != 0 and "BackendError: MINIMENET_DEVICE=gpu but no GPU is usable" in forced.stderr
    assert "Unset MINIMENET_DEVICE or set it to 'cpu'" in forced.stderr
    automatic = import_minimenet(None)
    assert automatic.returncode == 0 and automatic.stdout.split() == ["cpu", "numpy"]


def test_the_probe_reports_why_cupy_is_unusable(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    module, reason = backend._probe_cupy()
    assert module is None and "CuPy could not be imported" in reason and "minimenet[gpu]" in reason
