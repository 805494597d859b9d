"""The autograd engine: a ``Tensor`` over an xp array and the elementwise ops.

Every op is written the same way: compute the forward value from the parents' arrays, then
define ``backward(grad_out)`` right beside it, returning one gradient per parent (``None`` for a
parent that needs none). ``Tensor.backward()`` visits the graph in reverse topological order
and accumulates gradients, so a tensor that feeds several ops receives the sum of their
contributions. The heavier ops (convolution, batch norm, resize, the losses) live in their own
modules but are built with the same ``Tensor.from_op``.
"""
import contextlib

import numpy

from .backend import array_module, xp as default_xp

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block ops record no graph: for inference and parameter updates."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


class Tensor:
    def __init__(self, data, requires_grad=False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        module = array_module(data) if hasattr(data, "shape") else default_xp
        self.data = module.asarray(data, dtype=dtype)
        self.requires_grad = requires_grad
        self.grad = None
        self._parents = ()
        self._backward = None
        self.op = "leaf"

    @classmethod
    def from_op(cls, data, parents, backward, op):
        """The result of an op: records its parents and local backward when a graph is wanted."""
        out = cls(data)
        if _grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = tuple(parents)
            out._backward = backward
        out.op = op
        return out

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    xp = property(lambda self: array_module(self.data))

    def __repr__(self):
        flag = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, op={self.op}{flag})"

    def item(self):
        return float(self.data.item())  # any size-1 tensor; float(array) rejects ndim > 0 in NumPy 2

    def numpy(self):
        from .backend import to_numpy
        return to_numpy(self.data)

    def detach(self):
        """The same values, cut from the graph."""
        return Tensor(self.data)

    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        Intermediate gradients are freed as soon as they have been passed on, and the graph is
        released afterwards, so memory peaks at the forward activations plus one layer's
        gradients.
        """
        if not self.requires_grad:
            raise RuntimeError(f"backward() called on a tensor that does not require grad (op {self.op}): "
                               "no input of its graph has requires_grad=True, or it was computed under no_grad()")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() on a non-scalar tensor of shape {self.shape} needs an explicit "
                                   "gradient: call t.backward(grad) with an array of that shape, or reduce t "
                                   "to a scalar first (e.g. t.sum())")
            grad = self.xp.ones_like(self.data)
        else:
            grad = self.xp.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(): gradient of shape {grad.shape} given for a tensor of shape {self.shape}")

        order, seen = [], set()

        def visit(t):
            # Iterative depth-first search: MEnet's graph is deep enough to hit Python's recursion limit.
            stack = [(t, False)]
            while stack:
                node, expanded = stack.pop()
                if expanded:
                    order.append(node)
                elif id(node) not in seen:
                    if node.op != "leaf" and node._backward is None:
                        raise RuntimeError(f"backward() reached a {node.op} result whose graph an earlier backward() "
                                           "already freed: recompute the forward pass before calling backward() again")
                    seen.add(id(node))
                    stack.append((node, True))
                    stack.extend((p, False) for p in node._parents if p.requires_grad)
        visit(self)

        pending = {id(self): grad}
        for node in reversed(order):
            g = pending.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None:  # a leaf
                node.grad = g if node.grad is None else node.grad + g
                continue
            for parent, parent_grad in zip(node._parents, node._backward(g)):
                if parent_grad is None or not parent.requires_grad:
                    continue
                key = id(parent)
                pending[key] = parent_grad if key not in pending else pending[key] + parent_grad
            node._parents, node._backward = (), None

    # Operators, so that models read like maths.
    def __add__(self, other): return add(self, other)
    def __radd__(self, other): return add(other, self)
    def __sub__(self, other): return add(self, mul(other, -1.0))
    def __rsub__(self, other): return add(other, mul(self, -1.0))
    def __mul__(self, other): return mul(self, other)
    def __rmul__(self, other): return mul(other, self)
    def __neg__(self): return mul(self, -1.0)
    def sum(self, axis=None, keepdims=False): return sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return mean(self, axis, keepdims)
    def reshape(self, *shape): return reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)


def as_tensor(value, like):
    """A constant Tensor for a Python number or array, in ``like``'s dtype and backend."""
    if isinstance(value, Tensor):
        return value
    return Tensor(like.xp.asarray(value, dtype=like.dtype))


def check_dtypes(op, *tensors):
    # One backend too: CuPy refuses NumPy operands with a TypeError that names neither the op nor
    # the fix (e.g. a NumPy batch fed to a model whose parameters are on the GPU).
    modules = {t.xp.__name__ for t in tensors}
    if len(modules) > 1:
        raise TypeError(f"{op}: inputs mix NumPy and CuPy arrays; move them to one device first "
                        "(minimenet.xp.asarray(a) for the selected backend, minimenet.backend.to_numpy(a) for the CPU)")
    dtypes = {str(t.dtype) for t in tensors}
    if len(dtypes) > 1:
        raise TypeError(f"{op}: inputs have different dtypes {[str(t.dtype) for t in tensors]}; "
                        "convert them to one (float32 or float64) first")


def _unbroadcast(grad, shape):
    """Sum ``grad`` over the axes along which an operand of ``shape`` was broadcast."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


def _broadcast_shape(op, a, b):
    try:
        return numpy.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together") from None


def add(a, b):
    a, b = (as_tensor(a, b if isinstance(b, Tensor) else a), as_tensor(b, a if isinstance(a, Tensor) else b))
    check_dtypes("add", a, b)
    _broadcast_shape("add", a, b)

    def backward(g):
        return _unbroadcast(g, a.shape), _unbroadcast(g, b.shape)
    return Tensor.from_op(a.data + b.data, (a, b), backward, "add")


def mul(a, b):
    a, b = (as_tensor(a, b if isinstance(b, Tensor) else a), as_tensor(b, a if isinstance(a, Tensor) else b))
    check_dtypes("mul", a, b)
    _broadcast_shape("mul", a, b)

    def backward(g):
        return _unbroadcast(g * b.data, a.shape), _unbroadcast(g * a.data, b.shape)
    return Tensor.from_op(a.data * b.data, (a, b), backward, "mul")


def sum(x, axis=None, keepdims=False):
    def backward(g):
        if axis is not None and not keepdims:
            g = x.xp.expand_dims(g, axis)
        return (x.xp.broadcast_to(g, x.shape).copy(),)
    return Tensor.from_op(x.data.sum(axis=axis, keepdims=keepdims), (x,), backward, "sum")


def mean(x, axis=None, keepdims=False):
    axes = range(x.ndim) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    count = 1
    for a in axes:
        count *= x.shape[a]
    return mul(sum(x, axis, keepdims), 1.0 / count)


def reshape(x, shape):
    try:
        out = x.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} ({x.data.size} elements) to {tuple(shape)}") from None

    def backward(g):
        return (g.reshape(x.shape),)
    return Tensor.from_op(out, (x,), backward, "reshape")


def relu(x):
    positive = x.data > 0

    def backward(g):
        return (g * positive,)
    return Tensor.from_op(x.data * positive, (x,), backward, "relu")


def concat(tensors, axis=1):
    """Join tensors along ``axis`` (channels by default, as in MEnet's skip connections)."""
    if not tensors:
        raise ValueError("concat: needs at least one tensor")
    check_dtypes("concat", *tensors)
    first = tensors[0]
    for t in tensors[1:]:
        if t.ndim != first.ndim or any(n != m for i, (n, m) in enumerate(zip(t.shape, first.shape)) if i != axis % first.ndim):
            raise ValueError(f"concat: all shapes must match except on axis {axis}; got {[t.shape for t in tensors]}")
    sizes = [t.shape[axis] for t in tensors]
    bounds = [0]
    for n in sizes:
        bounds.append(bounds[-1] + n)

    def backward(g):
        index = [slice(None)] * g.ndim
        grads = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            index[axis] = slice(lo, hi)
            grads.append(g[tuple(index)])
        return grads
    return Tensor.from_op(first.xp.concatenate([t.data for t in tensors], axis=axis), tensors, backward, "concat")
