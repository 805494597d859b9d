"""Finding the kernel sources and reading their launch signatures.

The ``.cu`` files live in the repository's top-level ``kernels/`` directory. pyproject.toml
installs that directory as the package ``minimenet.kernels``, so a kernel file is at

* ``<repo>/kernels/NAME.cu`` in a source checkout, and
* ``<site-packages>/minimenet/kernels/NAME.cu`` in an installed wheel.

Both the GPU path and the emulator launch a kernel through its *signature*, parsed here from the
source: the parameter types decide how each Python argument is passed, so the ``.cu`` file is
the single place a kernel's interface is written down.
"""
import functools
import re
from dataclasses import dataclass
from pathlib import Path

EMULATOR_HEADER = "cuda_emulator.h"

# The C++ dialect every compiler of the kernels uses: NVRTC on a GPU and in the compile check,
# g++ in the emulator. The kernels need C++11 (constexpr); 17 is what NVRTC 12 and 13 default to.
CXX_STANDARD = "c++17"


class KernelSourceError(RuntimeError):
    pass


def kernel_dir():
    """The directory holding the ``.cu`` files, installed or in a source checkout."""
    package_root = Path(__file__).resolve().parent.parent  # .../minimenet
    candidates = (package_root / "kernels", package_root.parent / "kernels")
    for candidate in candidates:
        if (candidate / EMULATOR_HEADER).is_file():
            return candidate
    searched = ", ".join(str(c) for c in candidates)
    raise KernelSourceError(
        f"the CUDA kernel sources were not found (looked in {searched}). In a source checkout they "
        "are in kernels/ next to minimenet/; an installed wheel carries them as minimenet/kernels "
        "(package data in pyproject.toml). Reinstall minimenet or run from the repository root."
    )


def kernel_files():
    """Every ``.cu`` file, sorted by name."""
    return sorted(kernel_dir().glob("*.cu"))


def kernel_path(file_name):
    path = kernel_dir() / file_name
    if not path.is_file():
        raise KernelSourceError(f"kernel file {file_name!r} is not in {path.parent}")
    return path


@functools.lru_cache(maxsize=None)
def read_source(file_name):
    return kernel_path(file_name).read_text()


# C type as written in a kernel signature -> what the argument must be. Pointers name the NumPy
# dtype of the array they accept; scalars name the NumPy scalar type they are passed as.
POINTER_DTYPES = {"float*": "float32", "int*": "int32"}
SCALAR_TYPES = {"int": "int32", "float": "float32"}


@dataclass(frozen=True)
class Parameter:
    c_type: str   # normalised: qualifiers other than const dropped, e.g. "const float*"
    name: str

    @property
    def is_pointer(self):
        return self.c_type.endswith("*")

    @property
    def dtype(self):
        """NumPy dtype name of the array (pointers) or scalar passed for this parameter."""
        base = self.c_type.removeprefix("const ")
        return POINTER_DTYPES[base] if self.is_pointer else SCALAR_TYPES[base]


@dataclass(frozen=True)
class KernelSignature:
    name: str
    parameters: tuple


_KERNEL_PATTERN = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
_COMMENT_PATTERN = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)


def _parse_parameter(text, kernel_name):
    tokens = text.replace("*", " * ").split()
    tokens = [t for t in tokens if t != "__restrict__"]
    if len(tokens) < 2:
        raise KernelSourceError(f"kernel {kernel_name}: cannot read parameter {text.strip()!r}")
    name = tokens[-1]
    c_type = " ".join(tokens[:-1]).replace(" *", "*")
    parameter = Parameter(c_type, name)
    base = c_type.removeprefix("const ")
    if base not in (POINTER_DTYPES if parameter.is_pointer else SCALAR_TYPES):
        supported = ", ".join(list(POINTER_DTYPES) + list(SCALAR_TYPES))
        raise KernelSourceError(
            f"kernel {kernel_name}: parameter {name!r} has type {c_type!r}; the launchers support "
            f"{supported} (optionally const): extend POINTER_DTYPES or SCALAR_TYPES in "
            "minimenet/cuda/sources.py to add one"
        )
    return parameter


def parse_kernels(source):
    """Every ``extern "C" __global__ void name(...)`` in ``source``, in order of appearance."""
    code = _COMMENT_PATTERN.sub(" ", source)
    kernels = []
    for match in _KERNEL_PATTERN.finditer(code):
        name, parameter_list = match.groups()
        parameters = tuple(_parse_parameter(p, name) for p in parameter_list.split(",") if p.strip())
        kernels.append(KernelSignature(name, parameters))
    return kernels


@functools.lru_cache(maxsize=None)
def kernel_signatures(file_name):
    """``{kernel name: KernelSignature}`` for one kernel file."""
    return {k.name: k for k in parse_kernels(read_source(file_name))}


def int_constant(file_name, constant_name):
    """The value of ``constexpr int NAME = value;`` in a kernel file, e.g. a tile size the launch
    geometry must agree with, so that it is written down only once."""
    match = re.search(rf"constexpr\s+int\s+{constant_name}\s*=\s*(\d+)\s*;", read_source(file_name))
    if match is None:
        raise KernelSourceError(f"{file_name} does not define constexpr int {constant_name}")
    return int(match.group(1))
