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

from . import memory, threads
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


def grad_enabled():
    """Whether ops record a graph now (False inside ``no_grad()``)."""
    return _grad_enabled


DEFAULT_FLOAT_DTYPE = "float32"


class Tensor:
    """An array (NumPy or CuPy) with the graph that computed it.

    Integer and bool data (an array or Python numbers, not another Tensor) become
    ``DEFAULT_FLOAT_DTYPE`` (float32) unless ``dtype`` is given:
    gradients only exist for floats, and ops cast their scalar operands to the tensor's dtype, so
    an integer tensor would turn ``* 2.5`` into ``* 2``. Float data keeps its precision.

    In-place changes are checked as PyTorch does: every assignment to ``t.data``, augmented ones
    included (``t.data += 1``, ``t.data = ...``), bumps ``t.version``; each op records its inputs'
    versions, and ``backward()`` raises if an input changed after the forward pass, since its
    gradient would silently use the new values. Tensors that share an array (``detach()``,
    ``Tensor(t)``) share the counter. A write through an index (``t.data[i] = v``) goes straight
    to the array and is not seen: write ``t.data = new_array`` instead when a graph may still use t.
    """

    def __init__(self, data, requires_grad=False, dtype=None):
        source = data if isinstance(data, Tensor) else None
        if source is not None:
            data = source._data
        module = array_module(data) if hasattr(data, "shape") else default_xp
        array = module.asarray(data, dtype=dtype)
        if dtype is None and source is None and array.dtype.kind in "biu":
            array = array.astype(DEFAULT_FLOAT_DTYPE)
        self._data = array
        # A one-element list, so that tensors viewing the same array can share one counter.
        self._version_cell = source._version_cell if source is not None and array is source._data else [0]
        self.requires_grad = requires_grad
        self.grad = None
        self._parents = ()
        self._parent_versions = ()
        self._backward = None
        self.op = "leaf"

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        # Reached by t.data = ... and by t.data += ... (Python stores the in-place result back).
        self._data = value
        self._version_cell[0] += 1

    @property
    def version(self):
        """How many times ``data`` has been assigned (in place or not) since this tensor was made."""
        return self._version_cell[0]

    @classmethod
    def from_op(cls, data, parents, backward, op):
        """The result of an op: records its parents, their versions and local backward when a graph is wanted."""
        out = cls(data, dtype=getattr(data, "dtype", None))
        if _grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = tuple(parents)
            out._parent_versions = tuple(p._version_cell[0] for p in out._parents)
            out._backward = backward
        out.op = op
        return out

    def _check_versions(self):
        """Raise if this op's output or one of its inputs was changed in place after the forward pass."""
        if self._version_cell[0] != 0:
            raise RuntimeError(
                f"backward(): the output of op {self.op} (shape {self.shape}) was changed in place after the forward "
                f"pass (version {self._version_cell[0]}, expected 0), so its gradient would be wrong; recompute the "
                "forward pass after the change, or change a copy (Tensor(t.data.copy()))")
        for position, (parent, saved) in enumerate(zip(self._parents, self._parent_versions)):
            if parent._version_cell[0] != saved:
                raise RuntimeError(
                    f"backward(): input {position} of op {self.op} (a {parent.op} tensor of shape {parent.shape}) "
                    f"was changed in place after the forward pass (version {parent._version_cell[0]}, expected "
                    f"{saved}), so its gradient would be wrong; recompute the forward pass after the change, or "
                    "change a copy (Tensor(t.data.copy()))")

    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)
    xp = property(lambda self: array_module(self._data))

    def __repr__(self):
        flag = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, op={self.op}{flag})"

    def item(self):
        return float(self.data.item())  # any size-1 tensor; float(array) rejects ndim > 0 in NumPy 2

    def numpy(self):
        from .backend import to_numpy
        return to_numpy(self.data)

    def detach(self):
        """The same values (the same array, sharing the in-place version counter), cut from the graph."""
        return Tensor(self)

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
                    if node._backward is not None:
                        # Checked for the whole graph before any gradient is accumulated.
                        node._check_versions()
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
                node.grad = g if node.grad is None else _sum(node.grad, g)
                continue
            for parent, parent_grad in zip(node._parents, node._backward(g)):
                if parent_grad is None or not parent.requires_grad:
                    continue
                key = id(parent)
                pending[key] = parent_grad if key not in pending else _sum(pending[key], parent_grad)
            node._parents, node._parent_versions, node._backward = (), (), None

    # Operators, so that models read like maths.
    def __add__(self, other): return add(self, other)
    def __radd__(self, other): return add(other, self)
    def __sub__(self, other): return add(self, mul(as_tensor(other, self), -1.0))  # other may be a plain number
    def __rsub__(self, other): return add(other, mul(self, -1.0))
    def __mul__(self, other): return mul(self, other)
    def __rmul__(self, other): return mul(other, self)
    def __neg__(self): return mul(self, -1.0)
    def sum(self, axis=None, keepdims=False): return reduce_sum(self, axis, keepdims)
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
    if len({t.xp for t in tensors}) > 1:
        raise TypeError(f"{op}: inputs mix NumPy and CuPy arrays; move them to one device first "
                        "(minimenet.xp.asarray(a) for the selected backend, minimenet.backend.to_numpy(a) for the CPU)")
    if len({t.dtype for t in tensors}) > 1:
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


def _sum(a, b):
    """a + b (same shape) in reused memory (``minimenet.memory``)."""
    return threads.apply(array_module(a).add, a, b, out=memory.empty_like(a))


def add(a, b):
    a, b = (as_tensor(a, b if isinstance(b, Tensor) else a), as_tensor(b, a if isinstance(a, Tensor) else b))
    check_dtypes("add", a, b)

    def backward(g):
        return _unbroadcast(g, a.shape), _unbroadcast(g, b.shape)
    out = memory.empty(_broadcast_shape("add", a, b), a.dtype, like=a.data)
    return Tensor.from_op(threads.apply(a.xp.add, a.data, b.data, out=out), (a, b), backward, "add")


def mul(a, b):
    a, b = (as_tensor(a, b if isinstance(b, Tensor) else a), as_tensor(b, a if isinstance(a, Tensor) else b))
    check_dtypes("mul", a, b)
    _broadcast_shape("mul", a, b)

    def backward(g):
        return _unbroadcast(g * b.data, a.shape), _unbroadcast(g * a.data, b.shape)
    return Tensor.from_op(a.data * b.data, (a, b), backward, "mul")


def reduce_sum(x, axis=None, keepdims=False):
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
    return mul(reduce_sum(x, axis, keepdims), 1.0 / count)


def reshape(x, shape):
    try:
        out = x.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} ({x.data.size} elements) to {tuple(shape)}") from None

    def backward(g):
        return (g.reshape(x.shape),)
    return Tensor.from_op(out, (x,), backward, "reshape")


# NumPy's maximum against the scalar 0 runs about three times slower than against an array of
# zeros (numpy 2.3, float32: 38 against 12 us for 129,024 values), so ReLU takes its zeros from
# a reused buffer of this many, a chunk at a time. A strided view (the inference BRC writes into
# the padded rows of a convolution's block) is broadcast against one row of zeros instead:
# 32 x 50 x 224 of a 226-wide buffer, 154 against 86 us.
RELU_CHUNK = 2**16


def maximum_zero(x, out):
    """out = max(x, 0) for arrays of one shape (out may be x)."""
    xp = array_module(x)
    if xp is not numpy:
        return xp.maximum(x, 0, out=out)
    if not (x.flags.c_contiguous and out.flags.c_contiguous):
        if x.ndim == 0 or x.shape[-1] > RELU_CHUNK:
            return numpy.maximum(x, 0, out=out)
        return numpy.maximum(x, _zeros(x.shape[-1], x), out=out)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    zeros = _zeros(min(RELU_CHUNK, flat_x.size), x)
    for start in range(0, flat_x.size, RELU_CHUNK):
        stop = min(start + RELU_CHUNK, flat_x.size)
        numpy.maximum(flat_x[start:stop], zeros[:stop - start], out=flat_out[start:stop])
    return out


def _zeros(count, like):
    """``count`` zeros of like's dtype, in a reused buffer (this thread's)."""
    zeros = memory.scratch("relu zeros", (count,), like.dtype, like=like)
    zeros[...] = 0
    return zeros


def relu(x):
    data = x.data
    y = memory.empty_like(data)
    shares = threads.channel_slices(y)
    if len(shares) > 1:  # a worker's channels of one image are contiguous
        def part(channels):
            for image in range(len(y)):
                maximum_zero(data[image, channels], y[image, channels])
        threads.parallel(part, shares)
    else:
        maximum_zero(data, y)

    def backward(g):
        # y > 0 exactly where x > 0; the graph keeps y anyway (the next op's input), not a mask.
        return (threads.apply(x.xp.multiply, g, y > 0, out=memory.empty_like(g)),)
    return Tensor.from_op(y, (x,), backward, "relu")


def tanh(x):
    """The features' squashing (the authors' TanH after the feature head's batch norm)."""
    y = x.xp.tanh(x.data)

    def backward(g):
        return (g * (1 - y * y),)
    return Tensor.from_op(y, (x,), backward, "tanh")


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
