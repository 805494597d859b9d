"""Layers: a ``Module`` base class and the few layers MEnet is made of."""
import math

import numpy

from . import backend
from .conv import conv2d, conv_transpose2d
from .norm import batch_norm, eval_affine
from .tensor import Tensor, relu

_init_rng = numpy.random.default_rng(0)


def manual_seed(seed):
    """Seed the generator that initialises parameters, so that models are reproducible."""
    global _init_rng
    _init_rng = numpy.random.default_rng(seed)


def parameter(array):
    return Tensor(backend.xp.asarray(array), requires_grad=True)


def xavier_uniform(shape, dtype):
    """Caffe's "xavier" filler, which the authors use: U(-a, a) with a = sqrt(3 / fan_in) and
    fan_in = the weight blob's size over its first axis (in kh kw for a convolution's
    (out, in, kh, kw) weight; out kh kw for a transposed convolution's (in, out, kh, kw))."""
    fan_in = math.prod(shape[1:])
    bound = math.sqrt(3.0 / fan_in)
    return parameter(_init_rng.uniform(-bound, bound, size=shape).astype(dtype))


class Module:
    """Holds parameters (Tensors with requires_grad), buffers (arrays such as batch-norm
    statistics) and sub-modules, found by walking the attributes. Names follow attribute paths
    ("encoder.0.conv.weight"), and ``state_dict`` maps them to NumPy arrays for checkpoints."""
    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{i}", item

    def modules(self):
        """This module and every module below it, depth first in attribute order."""
        yield self
        for _, child in self.children():
            yield from child.modules()

    def named_parameters(self, prefix=""):
        for name, value in vars(self).items():
            if isinstance(value, Tensor) and value.requires_grad:
                yield prefix + name, value
        for name, child in self.children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        for name in getattr(self, "buffer_names", ()):
            yield prefix + name, getattr(self, name)
        for name, child in self.children():
            yield from child.named_buffers(f"{prefix}{name}.")

    def state_dict(self):
        state = {name: backend.to_numpy(p.data).copy() for name, p in self.named_parameters()}
        state.update({name: backend.to_numpy(b).copy() for name, b in self.named_buffers()})
        return state

    def load_state_dict(self, state):
        """Copy arrays into the parameters and buffers in place; names and shapes must match."""
        targets = {name: p.data for name, p in self.named_parameters()}
        targets.update(dict(self.named_buffers()))
        missing, unexpected = sorted(set(targets) - set(state)), sorted(set(state) - set(targets))
        if missing or unexpected:
            raise KeyError(f"load_state_dict: the state does not match this model: missing {missing[:5]}"
                           f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''} "
                           "(was it saved from a model with another configuration?)")
        for name, target in targets.items():
            if tuple(state[name].shape) != tuple(target.shape):
                raise ValueError(f"load_state_dict: {name} has shape {tuple(state[name].shape)} in the state but "
                                 f"{tuple(target.shape)} in the model (was it saved from another configuration?)")
            target[...] = backend.array_module(target).asarray(state[name], dtype=target.dtype)

    def train(self, mode=True):
        self.training = mode
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def num_parameters(self):
        return int(numpy.sum([p.data.size for p in self.parameters()]))


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, dtype="float32"):
        kh, kw = kernel_size if isinstance(kernel_size, tuple) else (kernel_size, kernel_size)
        self.stride, self.padding = stride, padding
        self.weight = xavier_uniform((out_channels, in_channels, kh, kw), dtype)
        self.bias = parameter(numpy.zeros(out_channels, dtype)) if bias else None

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, self.stride, self.padding)


class ConvTranspose2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, bias=True, dtype="float32"):
        kh, kw = kernel_size if isinstance(kernel_size, tuple) else (kernel_size, kernel_size)
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.weight = xavier_uniform((in_channels, out_channels, kh, kw), dtype)
        self.bias = parameter(numpy.zeros(out_channels, dtype)) if bias else None

    def forward(self, x):
        return conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding)


class BatchNorm2d(Module):
    """Batch normalisation with learnable scale (gamma, init 1) and shift (beta, init 0); see
    ``norm.batch_norm`` for the momentum convention."""
    buffer_names = ("running_mean", "running_var")

    def __init__(self, channels, momentum=0.1, eps=1e-5, dtype="float32"):
        self.momentum, self.eps = momentum, eps
        self.weight = parameter(numpy.ones(channels, dtype))
        self.bias = parameter(numpy.zeros(channels, dtype))
        self.running_mean = backend.xp.zeros(channels, dtype)
        self.running_var = backend.xp.ones(channels, dtype)

    def forward(self, x):
        return batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                          self.training, self.momentum, self.eps)

    def eval_affine(self, dtype):
        """(scale, shift) with which eval mode computes x scale + shift (``norm.eval_affine``)."""
        return eval_affine(self.weight.data, self.bias.data, self.running_mean, self.running_var, self.eps, dtype)


class ReLU(Module):
    def forward(self, x):
        return relu(x)


class Sequential(Module):
    def __init__(self, *layers):
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x
