"""One launch function for every kernel, on either backend.

``launch(file, kernel, grid, block, arguments)`` checks the arguments against the kernel's
signature (read from its ``.cu`` file), then runs it on the GPU when the arrays are CuPy arrays
and in the CPU emulator when they are NumPy arrays. The grid and block are the same either way.
"""
import numpy

from ..backend import array_module
from . import emulator, gpu, sources

_INT32_MAX = 2**31 - 1


class KernelArgumentError(TypeError):
    pass


def launch(file_name, kernel_name, grid, block, arguments):
    signature = sources.kernel_signatures(file_name)[kernel_name]
    if len(arguments) != len(signature.parameters):
        raise KernelArgumentError(
            f"{kernel_name} takes {len(signature.parameters)} arguments, got {len(arguments)}"
        )
    if any(int(d) == 0 for d in (*grid, *block)):
        return  # an empty grid has no work; CUDA would reject it as an invalid configuration

    array_modules = set()
    passed = []
    for parameter, argument in zip(signature.parameters, arguments):
        if parameter.is_pointer:
            module = array_module(argument)
            array_modules.add(module)
            if argument.dtype != parameter.dtype or not argument.flags.c_contiguous:
                raise KernelArgumentError(
                    f"{kernel_name}: argument {parameter.name!r} must be a C-contiguous "
                    f"{parameter.dtype} array, got {argument.dtype} "
                    f"{'contiguous' if argument.flags.c_contiguous else 'non-contiguous'}; "
                    f"convert it with ascontiguousarray(a, dtype={parameter.dtype})"
                )
            passed.append(argument)
        elif parameter.dtype == "int32":
            if not -_INT32_MAX - 1 <= int(argument) <= _INT32_MAX:
                raise KernelArgumentError(
                    f"{kernel_name}: {parameter.name}={argument} does not fit the kernel's 32-bit int"
                )
            passed.append(numpy.int32(argument))
        else:
            passed.append(numpy.float32(argument))

    if len(array_modules) != 1:
        raise KernelArgumentError(
            f"{kernel_name}: the array arguments mix NumPy and CuPy arrays; move them all to one "
            "device (NumPy runs the CPU emulator, CuPy the GPU)"
        )
    if array_modules.pop() is numpy:
        emulator.launch(file_name, kernel_name, grid, block, passed)
    else:
        gpu.launch(file_name, kernel_name, grid, block, passed)
