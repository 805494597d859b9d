"""Compile a kernel file with the real NVRTC, without a GPU or a driver.

NVRTC (CUDA's runtime compiler) is an ordinary shared library: compiling needs neither a GPU nor
libcuda, only ``libnvrtc``. It is found in the ``nvidia-cuda-nvrtc-cu12`` wheel (installed by the
``test`` extra) or, failing that, wherever the dynamic loader finds ``libnvrtc.so.12``/``.so.13``.
This lets the tests prove, on any machine, that every kernel compiles cleanly for real GPUs.

    python3 -m minimenet.cuda.nvrtc            # compile every kernel file for sm_75, sm_80 and sm_90
"""
import ctypes
import ctypes.util
import sys
from pathlib import Path

from . import sources
from .gpu import NVRTC_OPTIONS

_SUCCESS = 0
_LIBRARY_NAMES = ("libnvrtc.so.12", "libnvrtc.so.13", "libnvrtc.so")


def _wheel_library():
    """libnvrtc from the nvidia-cuda-nvrtc-cu12 wheel (namespace package nvidia.cuda_nvrtc)."""
    try:
        import nvidia.cuda_nvrtc as package
    except ImportError:
        return None
    for folder in package.__path__:
        for candidate in sorted(Path(folder, "lib").glob("libnvrtc.so*")):
            if ".alt." not in candidate.name:  # the .alt build is the same compiler, other libstdc++
                return str(candidate)
    return None


def load():
    """The NVRTC library as a ``ctypes.CDLL``, or None when it is not installed."""
    names = [_wheel_library(), *_LIBRARY_NAMES, ctypes.util.find_library("nvrtc")]
    for name in filter(None, names):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def version(library):
    major, minor = ctypes.c_int(), ctypes.c_int()
    library.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def _check(library, result, what):
    if result != _SUCCESS:
        library.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise RuntimeError(f"NVRTC {what} failed: {library.nvrtcGetErrorString(result).decode()}")


def compile_source(library, source, file_name, architecture):
    """Compile ``source`` for ``architecture`` (e.g. ``"sm_90"``) with the options the GPU path
    uses. Returns ``(succeeded, log, cubin)``; a clean compile has an empty log."""
    program = ctypes.c_void_p()
    _check(library, library.nvrtcCreateProgram(
        ctypes.byref(program), source.encode(), file_name.encode(), 0, None, None), "program creation")
    try:
        options = [*NVRTC_OPTIONS, f"--gpu-architecture={architecture}"]
        option_array = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
        result = library.nvrtcCompileProgram(program, len(options), option_array)

        log_size = ctypes.c_size_t()
        _check(library, library.nvrtcGetProgramLogSize(program, ctypes.byref(log_size)), "log size query")
        log = ctypes.create_string_buffer(log_size.value)
        _check(library, library.nvrtcGetProgramLog(program, log), "log query")
        log_text = log.value.decode(errors="replace").strip()

        cubin = b""
        if result == _SUCCESS:
            cubin_size = ctypes.c_size_t()
            _check(library, library.nvrtcGetCUBINSize(program, ctypes.byref(cubin_size)), "CUBIN size query")
            buffer = ctypes.create_string_buffer(cubin_size.value)
            _check(library, library.nvrtcGetCUBIN(program, buffer), "CUBIN query")
            cubin = buffer.raw
        return result == _SUCCESS, log_text, cubin
    finally:
        library.nvrtcDestroyProgram(ctypes.byref(program))


def main(architectures=("sm_75", "sm_80", "sm_90")):
    library = load()
    if library is None:
        print("NVRTC not found: pip install nvidia-cuda-nvrtc-cu12", file=sys.stderr)
        return 2
    print("NVRTC %d.%d, options %s" % (*version(library), " ".join(NVRTC_OPTIONS)))
    failed = False
    for path in sources.kernel_files():
        for architecture in architectures:
            ok, log, cubin = compile_source(library, path.read_text(), path.name, architecture)
            print(f"{path.name} {architecture}: {'ok' if ok and not log else 'FAILED'} ({len(cubin)} bytes)")
            if log:
                print(log)
            failed |= not ok or bool(log)
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
