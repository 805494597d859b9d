"""Stochastic gradient descent with momentum and weight decay."""
from . import backend, memory, threads


# On the CPU a parameter is updated a chunk of this many elements at a time: the update's four
# passes then run over a chunk in the cache, not four times over a 205 MB weight from memory,
# and its products need only a chunk-sized scratch array, not one of each parameter's size.
UPDATE_CHUNK = 2**18


class SGD:
    """SGD with momentum, in the form Caffe uses (the paper trained with Caffe):

        v <- momentum * v + lr * (grad + weight_decay * p)
        p <- p - v

    With a constant learning rate this equals PyTorch's form (v <- momentum v + g; p <- p - lr v);
    they differ only while lr changes (at a schedule's steps), where Caffe's keeps the velocity
    that was built at the old rate. The paper's values: lr 0.1, momentum 0.9, weight decay 1e-8.

    ``multipliers``: one (lr multiplier, weight-decay multiplier) pair per parameter, Caffe's
    ``lr_mult`` and ``decay_mult`` (e.g. ``MEnet.learning_rate_multipliers()``); default 1 and 1.
    ``clip_norm``, when set, rescales the whole gradient so its global L2 norm is at most that
    value before the update.
    """

    def __init__(self, parameters, lr, momentum=0.0, weight_decay=0.0, clip_norm=None, multipliers=None):
        self.parameters = list(parameters)
        if not self.parameters:
            raise ValueError("SGD: got no parameters to optimise")
        self.multipliers = list(multipliers) if multipliers is not None else [(1.0, 1.0)] * len(self.parameters)
        if len(self.multipliers) != len(self.parameters):
            raise ValueError(f"SGD: got {len(self.multipliers)} multiplier pairs for {len(self.parameters)} parameters; give one per parameter")
        self.lr, self.momentum, self.weight_decay, self.clip_norm = lr, momentum, weight_decay, clip_norm
        self.velocities = [None] * len(self.parameters)
        self.groups = self._group_small_parameters()
        for i, p in enumerate(self.parameters):
            if self.velocities[i] is None:
                self.velocities[i] = p.xp.zeros(p.shape, dtype=p.dtype)

    def _group_small_parameters(self):
        """The parameters under ``UPDATE_CHUNK`` elements, grouped by backend, dtype and
        multipliers, each group's velocities views of one array: a group is updated in one pass
        over its gradients, concatenated, not parameter by parameter (the tiny preset's 277
        parameters took 4 ms of its 80 ms step, a few NumPy calls each). Returns (indices,
        flat velocity) per group of two or more."""
        members = {}
        for i, (p, multipliers) in enumerate(zip(self.parameters, self.multipliers)):
            if p.data.size < UPDATE_CHUNK:
                members.setdefault((p.xp.__name__, str(p.dtype), tuple(multipliers)), []).append(i)
        groups = []
        for indices in members.values():
            if len(indices) < 2:
                continue
            first = self.parameters[indices[0]]
            flat = first.xp.zeros(sum(self.parameters[i].data.size for i in indices), dtype=first.dtype)
            start = 0
            for i in indices:
                size = self.parameters[i].data.size
                self.velocities[i] = flat[start:start + size].reshape(self.parameters[i].shape)
                start += size
            groups.append((indices, flat))
        return groups

    def zero_grad(self):
        for p in self.parameters:
            p.grad = None

    def grad_norm(self):
        """Global L2 norm of the gradients: sqrt(sum over parameters of sum grad^2)."""
        with_grads = [p for p in self.parameters if p.grad is not None]
        return float(sum(self._each(self._squares, [(p, part) for p in with_grads for part in self._chunks(p)]))) ** 0.5

    @staticmethod
    def _squares(item):
        """sum grad^2 over one chunk of a parameter, in float64 (without a float64 copy of the
        gradient): a float32 sum over tens of millions of squares would be off in the fourth
        digit."""
        p, part = item
        grad = p.grad.reshape(-1)[part]
        return p.xp.square(grad, out=memory.scratch("sgd", grad.shape, grad.dtype, like=grad)).sum(dtype="float64")

    def step(self):
        """One update; returns the gradient norm before clipping. Without clipping, each chunk's
        squares are summed in the update's own pass over it, while it is in the cache: a separate
        pass read every gradient from memory once more (the paper preset's 185 million)."""
        norm = self.grad_norm() if self.clip_norm else None
        scale = min(1.0, self.clip_norm / (norm + 1e-12)) if self.clip_norm else 1.0

        def update(item):
            p, v, (lr_mult, decay_mult), part = item
            squares = self._squares((p, part)) if norm is None else 0.0
            grad, value, velocity = p.grad.reshape(-1)[part], p.data.reshape(-1)[part], v.reshape(-1)[part]
            lr, xp, term = self.lr * lr_mult, p.xp, memory.scratch("sgd", grad.shape, grad.dtype, like=grad)
            velocity *= self.momentum
            velocity += xp.multiply(grad, lr * scale, out=term)
            if self.weight_decay * decay_mult:
                velocity += xp.multiply(value, lr * self.weight_decay * decay_mult, out=term)
            value -= velocity
            return squares
        grouped = set()
        squares = []
        for indices, velocity in self.groups:
            if all(self.parameters[i].grad is not None for i in indices):
                squares.append(self._update_group(indices, velocity, scale, norm is None))
                grouped.update(indices)
        updated = [(p, v, multipliers) for i, (p, v, multipliers) in enumerate(zip(self.parameters, self.velocities, self.multipliers))
                   if p.grad is not None and i not in grouped]
        for p, _, _ in updated:
            if not p.data.flags.c_contiguous:  # its chunks below must be views, not copies
                p.data = p.xp.ascontiguousarray(p.data)
        squares += self._each(update, [(p, v, multipliers, part) for p, v, multipliers in updated for part in self._chunks(p)])
        for p, _, _ in updated:
            p.data = p.data  # written in place above: this counts the change (Tensor.version)
        return norm if norm is not None else float(sum(squares)) ** 0.5

    def _update_group(self, indices, velocity, scale, with_squares):
        """The update of a group of small parameters (``_group_small_parameters``) on their
        concatenated gradients; returns the sum of their squared gradients (when
        ``with_squares``, else 0)."""
        parameters = [self.parameters[i] for i in indices]
        xp, (lr_mult, decay_mult) = backend.array_module(velocity), self.multipliers[indices[0]]
        lr = self.lr * lr_mult
        grad = xp.concatenate([p.grad.reshape(-1) for p in parameters],
                              out=memory.scratch("sgd", velocity.shape, velocity.dtype, like=velocity))
        squares = xp.square(grad, out=memory.scratch("sgd squares", grad.shape, grad.dtype, like=grad)).sum(dtype="float64") \
            if with_squares else 0.0
        velocity *= self.momentum
        grad *= lr * scale
        velocity += grad
        if self.weight_decay * decay_mult:
            values = xp.concatenate([p.data.reshape(-1) for p in parameters], out=grad)
            values *= lr * self.weight_decay * decay_mult
            velocity += values
        for i, p in zip(indices, parameters):
            xp.subtract(p.data, self.velocities[i], out=p.data)
            p.data = p.data  # written in place: this counts the change (Tensor.version)
        return squares

    def _chunks(self, p):
        """Slices of p's flattened elements, one per chunk (the whole parameter on the GPU)."""
        chunk = UPDATE_CHUNK if type(p.data).__module__ == "numpy" else max(1, p.data.size)
        return [slice(start, start + chunk) for start in range(0, p.data.size, chunk)]

    def _each(self, task, items):
        """task(item) for each item, in order: the chunks are independent, so on the CPU the
        worker threads share them out (``minimenet.threads``) where the parameters are large
        enough on average to be worth it."""
        on_cpu = all(type(p.data).__module__ == "numpy" for p in self.parameters)
        large = sum(p.data.size for p in self.parameters) >= threads.MIN_SPLIT_ELEMENTS * len(self.parameters)
        return threads.parallel(task, items) if on_cpu and large else [task(item) for item in items]

    def state_dict(self):
        return {f"velocity.{i}": backend.to_numpy(v).copy() for i, v in enumerate(self.velocities)}

    def load_state_dict(self, state):
        if len(state) != len(self.velocities):
            raise ValueError(f"SGD.load_state_dict: the state holds {len(state)} velocities but this optimiser has "
                             f"{len(self.velocities)} parameters (saved from another model configuration?)")
        for i, v in enumerate(self.velocities):
            v[...] = backend.array_module(v).asarray(state[f"velocity.{i}"])
