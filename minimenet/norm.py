"""Normalisation ops: batch normalisation and L2 normalisation over channels; for the fused BRC
and BRD (``fused``), a batch norm as an affine map (and with a ReLU, on arrays), the batch's
statistics, and the backward of a ReLU after a training batch norm."""
from . import memory, threads
from .backend import array_module
from .tensor import Tensor, check_dtypes, maximum_zero


def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Batch normalisation (Ioffe and Szegedy) over (N, H, W) for each channel of x (N, C, H, W).

    y = gamma * (x - mu) / sqrt(var + eps) + beta

    Training mode: mu and var are the batch's (var biased, i.e. divided by N*H*W), and the running
    statistics are updated in place with PyTorch's momentum convention,
        running = (1 - momentum) * running + momentum * batch_statistic,
    where the running variance takes the unbiased batch variance. Eval mode uses the running
    statistics and so treats mu and var as constants.
    """
    check_batch_norm("batch_norm", x, gamma, beta, running_mean, running_var, training)
    xp, data, c = x.xp, x.data, x.shape[1]
    count = x.shape[0] * x.shape[2] * x.shape[3]
    # Every channel is normalised on its own, so groups of channels go to the worker threads.
    groups = threads.channel_slices(data)
    if training:
        mu, var = xp.empty(c, dtype=x.dtype), xp.empty(c, dtype=x.dtype)
    else:
        mu, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        eval_scale, eval_shift = eval_affine(gamma.data, beta.data, running_mean, running_var, eps, x.dtype)
    inv_std = xp.empty(c, dtype=x.dtype)
    y = memory.empty_like(data)

    def normalise(channels):
        x_c, y_c = data[:, channels], y[:, channels]
        if training:
            mu[channels], var[channels] = _centred_moments(x_c, y_c, count)
        inv_std[channels] = 1.0 / xp.sqrt(var[channels] + eps)
        if training:
            y_c *= _per_channel(gamma.data[channels] * inv_std[channels])
            y_c += _per_channel(beta.data[channels])
        else:  # the statistics are constants: y = x scale + shift, two passes over x
            xp.multiply(x_c, _per_channel(eval_scale[channels]), out=y_c)
            y_c += _per_channel(eval_shift[channels])
    threads.parallel(normalise, groups)
    if training:
        update_running(running_mean, running_var, mu, var, count, momentum)

    def backward(g):
        d_x, d_gamma, d_beta = memory.empty_like(data), xp.empty(c, dtype=g.dtype), xp.empty(c, dtype=g.dtype)

        def differentiate(channels):
            d_gamma[channels], d_beta[channels] = _input_grad(data[:, channels], g[:, channels], d_x[:, channels], mu[channels],
                                                              inv_std[channels], gamma.data[channels], count, training)
        threads.parallel(differentiate, groups)
        return d_x, d_gamma, d_beta
    return Tensor.from_op(y, (x, gamma, beta), backward, "batch_norm")


def check_batch_norm(op, x, gamma, beta, running_mean, running_var, training):
    """The checks of a batch norm's arguments, with messages that name ``op``."""
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (batch, channels, height, width), got shape {x.shape}")
    c = x.shape[1]
    if gamma.shape != (c,) or beta.shape != (c,) or running_mean.shape != (c,) or running_var.shape != (c,):
        raise ValueError(f"{op}: input has {c} channels; gamma, beta and the running statistics must all have shape ({c},), "
                         f"got {gamma.shape}, {beta.shape}, {running_mean.shape}, {running_var.shape}")
    check_dtypes(op, x, gamma, beta)
    if training and x.shape[0] * x.shape[2] * x.shape[3] < 2:
        raise ValueError(f"{op}: training mode needs more than one value per channel to estimate a variance, "
                         f"got input of shape {x.shape}; use a batch larger than 1 or call model.eval()")


# The training BRC's batch statistics (three passes over x) and its backward (ten over x and the
# gradients) go through groups of whole channels of about this many elements
# (``threads.channel_groups``), so that each pass reads what the last one wrote from the cache,
# not from memory. Batch 5, ms for the backward on one thread / two, groups of 2^19 against one
# group per worker: 32 channels at 224 x 224 12.3 / 8.7 -> 8.5 / 5.4, 64 at 112 x 112 5.5 / 3.7
# -> 4.1 / 2.7, 256 at 28 x 28 level (2^15 to 2^20 all within 10 % of 2^19 at 224 x 224).
CACHED_PASSES = 2**19


def batch_statistics(x, eps):
    """(mu, var, 1 / sqrt(var + eps)) of each channel of the array x (N, C, H, W) over (N, H, W),
    var biased, by the same arithmetic as ``batch_norm`` in training mode (x - mu goes to a
    scratch buffer, not to an output)."""
    xp, c, count = array_module(x), x.shape[1], x.shape[0] * x.shape[2] * x.shape[3]
    mu, var = xp.empty(c, dtype=x.dtype), xp.empty(c, dtype=x.dtype)

    def moments(channels):
        x_c = x[:, channels]
        mu[channels], var[channels] = _centred_moments(x_c, memory.scratch("centred", x_c.shape, x.dtype, like=x), count)
    threads.parallel(moments, threads.channel_groups(x, CACHED_PASSES))
    return mu, var, 1.0 / xp.sqrt(var + eps)


def update_running(running_mean, running_var, mu, var, count, momentum):
    """The running statistics' update of a training batch norm (``batch_norm``)."""
    running_mean *= 1 - momentum
    running_mean += momentum * mu
    running_var *= 1 - momentum
    running_var += momentum * var * count / (count - 1)


def relu_batch_norm_grad(x, d_relu, mu, inv_std, gamma, scale, shift):
    """The gradients (x, gamma, beta) of relu(batch_norm(x)) in training mode, from the
    gradient ``d_relu`` of its output (which it may overwrite): the ReLU's mask is recomputed
    from x as x scale + shift > 0 (scale = gamma inv_std, shift = beta - mu scale, as the
    forward applied them), then the batch norm's backward as in ``batch_norm``."""
    xp, c, count = array_module(x), x.shape[1], x.shape[0] * x.shape[2] * x.shape[3]
    # d_x overwrites d_relu where it is contiguous (each group of channels reads its d_relu
    # before it writes its d_x): one full-size array fewer to find memory for.
    d_x = d_relu if d_relu.flags.c_contiguous else memory.empty_like(x)
    d_gamma, d_beta = xp.empty(c, dtype=x.dtype), xp.empty(c, dtype=x.dtype)

    def differentiate(channels):
        x_c = x[:, channels]
        # The forward's ReLU passed x scale + shift where that sum, rounded, was positive, which
        # is where x scale (rounded as it was) exceeds -shift: one pass fewer. The masked
        # gradient goes to contiguous memory (d_relu may be a view of padded rows: the batch
        # norm's sums over such a view ran 5 times slower).
        d_z = memory.scratch("pre-activation", x_c.shape, x.dtype, like=x)
        xp.multiply(x_c, _per_channel(scale[channels]), out=d_z)
        passed = xp.greater(d_z, _per_channel(-shift[channels]), out=memory.scratch("relu mask", x_c.shape, bool, like=x))
        xp.multiply(d_relu[:, channels], passed, out=d_z)
        d_gamma[channels], d_beta[channels] = _input_grad(x_c, d_z, d_x[:, channels], mu[channels], inv_std[channels],
                                                          gamma[channels], count, True)
    threads.parallel(differentiate, threads.channel_groups(x, CACHED_PASSES))
    return d_x, d_gamma, d_beta


def _centred_moments(x_c, centred, count):
    """(mu, biased var) of each channel of x_c, leaving x_c - mu in ``centred``."""
    mu = channel_sum(x_c) / count
    array_module(x_c).subtract(x_c, _per_channel(mu), out=centred)
    return mu, _channel_dot(centred, centred) / count


def _input_grad(x_c, g_c, d_c, mu, inv_std, gamma, count, training):
    """d_c = the batch norm's input gradient for the channels x_c from its output gradient g_c;
    returns (d_gamma, d_beta) of those channels."""
    # x - mu again from x, which the graph keeps anyway (it is the op's input): keeping x_hat
    # from the forward pass would hold one more full-size array per layer until here.
    centred = array_module(x_c).subtract(x_c, _per_channel(mu), out=d_c)
    d_gamma, d_beta = _channel_dot(g_c, centred) * inv_std, channel_sum(g_c)
    if training:
        # mu and var depend on every x: with d_x_hat = gamma g, the two mean terms remove its
        # components along 1 and along x_hat, and those means are d_beta and d_gamma / count:
        # d_x = gamma inv_std (g - d_beta / count - (x - mu) inv_std d_gamma / count).
        d_c *= _per_channel(-inv_std * d_gamma / count)
        d_c += g_c
        d_c -= _per_channel(d_beta / count)
        d_c *= _per_channel(gamma * inv_std)
    else:
        array_module(x_c).multiply(g_c, _per_channel(gamma * inv_std), out=d_c)
    return d_gamma, d_beta


def eval_affine(gamma, beta, running_mean, running_var, eps=1e-5, dtype=None):
    """Batch norm in eval mode as y = x scale + shift per channel: (scale, shift) with
    scale = gamma / sqrt(running_var + eps) and shift = beta - running_mean scale, in ``dtype``
    (gamma's by default)."""
    dtype = dtype or gamma.dtype
    scale = (gamma / array_module(gamma).sqrt(running_var.astype(dtype) + eps)).astype(dtype)
    return scale, (beta - running_mean.astype(dtype) * scale).astype(dtype)


# relu_affine takes its three passes over this many elements at a time (whole images), so that
# each pass reads what the last one wrote from the cache; the tiny preset's images are 8 to a
# group, which spares the calls. Tiny training step, one thread: 86.6-86.7 ms an image at a time,
# 81.8-82.6 in groups (benchmarks/bench_train.py --presets tiny --threads 1).
RELU_AFFINE_GROUP = 2**18


def relu_affine(x, scale, shift, out=None):
    """relu(x scale + shift), scale and shift (C,) per channel of x (B, C, H, W), into ``out``
    (new memory by default), ``RELU_AFFINE_GROUP`` elements of whole images at a time: a batch
    norm as an affine map (``eval_affine``, or the batch's statistics in the training BRC) and a
    ReLU on arrays, for the fused BRC and BRD (``fused``)."""
    xp, y = array_module(x), memory.empty_like(x) if out is None else out
    scale, shift = scale.reshape(-1, 1, 1), shift.reshape(-1, 1, 1)
    images = max(1, RELU_AFFINE_GROUP // max(1, x[0].size))
    for first in range(0, len(x), images):
        result = y[first:first + images]
        xp.multiply(x[first:first + images], scale, out=result)
        result += shift
        maximum_zero(result, result)
    return y


def _per_channel(values):
    """A vector over channels, shaped to broadcast over (N, C, H, W)."""
    return values.reshape(1, -1, 1, 1)


def _channel_dot(a, b):
    """sum over (N, H, W) of a * b for each channel, in one pass without an a * b temporary."""
    return array_module(a).einsum("nchw,nchw->c", a, b)


def channel_sum(a):
    """sum over (N, H, W) for each channel (NumPy's einsum does it in a third of the time of
    ``a.sum(axis=(0, 2, 3))``: 21 against 67 us on 8 x 16 x 64 x 64 float32)."""
    return array_module(a).einsum("nchw->c", a)


def l2_normalize(x, eps=1e-12):
    """y_c = x_c / sqrt(sum_c' x_c'^2 + eps) over the channel axis of x (N, C, H, W).

    ``eps`` keeps the op defined at x = 0 and bounds its gradient by about 1/sqrt(eps): the
    Jacobian is (I - y y^T) / sqrt(|x|^2 + eps) plus an eps term, which grows as |x| shrinks.
    Whatever eps, |y| < 1, so every feature lies in the unit ball.
    """
    if x.ndim < 2:
        raise ValueError(f"l2_normalize: input must have a channel axis (N, C, ...), got shape {x.shape}")
    norm = x.xp.sqrt((x.data * x.data).sum(axis=1, keepdims=True) + eps)
    y = x.data / norm

    def backward(g):
        return ((g - y * (g * y).sum(axis=1, keepdims=True)) / norm,)
    return Tensor.from_op(y, (x,), backward, "l2_normalize")
