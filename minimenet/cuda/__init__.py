"""Hand-written CUDA kernels (``kernels/*.cu``) for convolution and the metric loss.

Every function takes NumPy or CuPy arrays and returns arrays of the same kind: CuPy arrays run
the kernels on the GPU (compiled with NVRTC through ``cupy.RawModule``), NumPy arrays run the very
same kernel source in a CPU emulator (g++ and OpenMP), with the same grid and block. The emulator
exists so the kernels can be tested, and stepped through in a debugger, on a machine with no GPU;
it is far too slow for training. docs/cuda.md explains both.

    conv2d_forward(x, w, stride, padding, kernels=None) -> y
    conv2d_input_grad(dy, w, x_shape, stride, padding, kernels=None) -> dx
    conv2d_weight_grad(x, dy, w_shape, stride, padding, kernels=None) -> dw
    metric_loss(y, labels, gradient="authors") -> (loss, grad)   # losses.metric_loss_arrays on the kernels

``kernels`` picks the convolution variant: "simple" (kernels/conv2d.cu), "tiled" or "tf32"
(kernels/conv2d_tiled.cu); by default $MINIMENET_CONV_KERNELS, else "tiled".
"""
from .conv import conv2d_forward, conv2d_input_grad, conv2d_weight_grad
from .emulator import EmulatorError
from .launch import KernelArgumentError, launch
from .metric import metric_loss
from .sources import KernelSourceError

__all__ = [
    "conv2d_forward", "conv2d_input_grad", "conv2d_weight_grad", "metric_loss",
    "launch", "EmulatorError", "KernelArgumentError", "KernelSourceError",
]
