"""The GPU path: kernel files compiled by NVRTC through ``cupy.RawModule`` and launched on CuPy
arrays.

Each file is compiled once per device, on its first launch there (CuPy also keeps the binary in
its own on-disk cache, so later processes skip NVRTC). Nothing here imports CuPy until a kernel
is launched on a CuPy array, so the package imports on machines without a GPU.
"""
import threading

from . import sources

NVRTC_OPTIONS = (f"--std={sources.CXX_STANDARD}",)

_functions = {}
_lock = threading.Lock()


def _function(file_name, kernel_name):
    import cupy

    key = (file_name, kernel_name, cupy.cuda.Device().id)
    with _lock:
        if key not in _functions:
            module = cupy.RawModule(code=sources.read_source(file_name), options=NVRTC_OPTIONS)
            try:
                # RawModule compiles on the first get_function; CuPy's error carries NVRTC's log
                # but not which file it was, so name it here.
                for name in sources.kernel_signatures(file_name):
                    _functions[(file_name, name, key[2])] = module.get_function(name)
            except cupy.cuda.compiler.CompileException as exc:
                raise sources.KernelSourceError(
                    f"NVRTC could not compile kernels/{file_name} (options {' '.join(NVRTC_OPTIONS)}):\n{exc}"
                ) from exc
        return _functions[key]


def compute_capability():
    """The current device's compute capability as an int, e.g. 90 for an H100."""
    import cupy

    return int(cupy.cuda.Device().compute_capability)


def launch(file_name, kernel_name, grid, block, arguments):
    """Launch on the current device and stream; ``arguments`` are CuPy arrays for pointers and
    NumPy scalars of the exact C type for scalars (CuPy passes a Python int as 64 bits)."""
    _function(file_name, kernel_name)(tuple(grid), tuple(block), tuple(arguments))
