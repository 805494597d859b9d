"""``gradcheck``: compare autograd gradients with central finite differences in float64."""
import numpy

from .backend import array_module, to_numpy
from .tensor import Tensor


class GradcheckError(AssertionError):
    pass


class GradcheckReport:
    """Worst absolute and relative error per input. ``ok`` when every checked element has
    |analytic - numeric| <= rtol * max(|analytic|, |numeric|, floor)."""

    def __init__(self, rows, rtol, floor):
        self.rows, self.rtol, self.floor = rows, rtol, floor

    @property
    def ok(self):
        return all(row["max_rel_error"] <= self.rtol for row in self.rows)

    def __str__(self):
        lines = [f"gradcheck (pass if relative error <= {self.rtol:g}, absolute floor {self.floor:g}):"]
        for row in self.rows:
            mark = "ok  " if row["max_rel_error"] <= self.rtol else "FAIL"
            lines.append(f"  {mark} input {row['input']} {row['shape']}: {row['checked']} elements, "
                         f"max abs error {row['max_abs_error']:.3g}, max rel error {row['max_rel_error']:.3g}")
        return "\n".join(lines)


def gradcheck(fn, inputs, eps=1e-5, rtol=1e-6, floor=1e-3, max_elements=None, seed=0, raise_on_failure=True):
    """Check ``fn``'s gradients with respect to every input that requires grad.

    fn(*inputs) returns a Tensor of any shape; it is reduced to the scalar sum(out * r) with a
    fixed random r, so every output element takes part. For each checked input element,
    numeric = (F(x + eps) - F(x - eps)) / (2 eps), and the relative error is
    |analytic - numeric| / max(|analytic|, |numeric|, floor): ``floor`` is the absolute scale
    below which a gradient counts as zero, so tiny gradients are judged by absolute error.
    ``max_elements`` checks that many randomly chosen elements per input instead of all (for
    big models). Inputs must be float64: float32's rounding swamps the differences.
    """
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if t.requires_grad and t.dtype != numpy.float64:
            raise TypeError(f"gradcheck: input {i} is {t.dtype}; finite differences need float64 inputs")
    rng = numpy.random.default_rng(seed)
    out = fn(*inputs)
    xp = array_module(out.data)
    r = xp.asarray(rng.standard_normal(out.shape))

    def scalar():
        return float((fn(*inputs).data * r).sum())

    for t in inputs:
        t.grad = None
    (fn(*inputs) * Tensor(r)).sum().backward()
    rows = []
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            continue
        analytic = to_numpy(t.grad) if t.grad is not None else numpy.zeros(t.shape)
        size = t.data.size
        indices = numpy.arange(size)
        if max_elements is not None and size > max_elements:
            indices = rng.choice(size, max_elements, replace=False)
        max_abs = max_rel = 0.0
        for k in indices:
            # Perturb t.data itself through a multi-index: reshape(-1) of a non-contiguous array
            # (a transpose, a strided slice) is a copy, and perturbing that would leave F unchanged.
            position = tuple(int(i) for i in numpy.unravel_index(k, t.shape))
            original = t.data[position].item()
            t.data[position] = original + eps
            plus = scalar()
            t.data[position] = original - eps
            minus = scalar()
            t.data[position] = original
            numeric = (plus - minus) / (2 * eps)
            a = analytic.reshape(-1)[k]
            error = abs(a - numeric)
            max_abs = max(max_abs, error)
            max_rel = max(max_rel, error / max(abs(a), abs(numeric), floor))
        rows.append(dict(input=i, shape=tuple(t.shape), checked=len(indices), max_abs_error=max_abs, max_rel_error=max_rel))
    report = GradcheckReport(rows, rtol, floor)
    if raise_on_failure and not report.ok:
        raise GradcheckError(str(report))
    return report
