"""Every kernel file compiles with the real NVRTC for sm_75 (T4), sm_80 (A100) and sm_90 (H100),
with warnings on and none emitted. NVRTC is a plain library: no GPU or driver is needed. It comes from the
nvidia-cuda-nvrtc-cu12 wheel, which the ``test`` extra installs."""
import pytest

from minimenet.cuda import nvrtc, sources

LIBRARY = nvrtc.load()
pytestmark = pytest.mark.skipif(
    LIBRARY is None, reason="NVRTC is not installed: pip install nvidia-cuda-nvrtc-cu12 (the 'test' extra)")

ARCHITECTURES = ["sm_75", "sm_80", "sm_90"]
KERNEL_FILES = [p.name for p in sources.kernel_files()]


def test_all_kernel_files_are_checked():
    assert {"conv2d.cu", "metric_loss.cu"} <= set(KERNEL_FILES)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("file_name", KERNEL_FILES)
def test_kernel_file_compiles_without_warnings(file_name, architecture):
    ok, log, cubin = nvrtc.compile_source(LIBRARY, sources.read_source(file_name), file_name, architecture)
    assert ok, f"{file_name} does not compile for {architecture}:\n{log}"
    assert log == "", f"{file_name} compiles for {architecture} with diagnostics:\n{log}"
    # extern "C" keeps the names unmangled: the launchers look kernels up by these names.
    for kernel in sources.kernel_signatures(file_name):
        assert kernel.encode() + b"\0" in cubin, f"{kernel} is not an entry point of the {architecture} binary"


def test_warnings_are_reported():
    """The check would catch a warning: the options do not silence them."""
    probe = 'extern "C" __global__ void probe(float* a) { int unused = 3; a[0] = 1.0f; }'
    ok, log, _ = nvrtc.compile_source(LIBRARY, probe, "probe.cu", ARCHITECTURES[-1])
    assert ok and "warning" in log
