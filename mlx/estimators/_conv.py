"""Convolution and pooling over time (1-D) or frequency x time (2-D), in PyTorch's layout.

One implementation serves both: ``d`` spatial axes (1 or 2), a multi-index over them written
``t`` (output position) or ``j`` (offset inside the window). For one layer::

    X    (n, C, *L)        input: n examples, C channels, spatial size L
    X_p                    X padded by p_before / p_after entries along each spatial axis
    W    (F, C, *k)        F kernels of size k;  b (F,)
    Y    (n, F, *L_out)    L_out = floor((L + p_before + p_after - k) / s) + 1  (stride s)

Convolution (a cross-correlation, as in every deep-learning library)::

    Y[n, f, t] = b[f] + sum_{c, j} W[f, c, j] X_p[n, c, s t + j]

im2col gathers the receptive fields as the columns of one matrix::

    cols[(c, j), (n, t)] = X_p[n, c, s t + j]            shape (C prod(k), n prod(L_out))

so that, with ``W_2`` = W reshaped (F, C prod(k)), the forward pass is one matrix product::

    Z = W_2 cols,    Y[n, f, t] = Z[f, (n, t)] + b[f]

and so is each half of the backward pass, from ``dY = dL/dY`` arranged as ``dZ`` (F, n prod(L_out))::

    dW_2  = dZ cols^T
    db[f] = sum_{n, t} dY[n, f, t]
    dcols = W_2^T dZ
    dX_p[n, c, s t + j] += dcols[(c, j), (n, t)]       (col2im: one strided add per offset j)
    dX    = dX_p without its padding

Pooling reads the same windows (padding does not count)::

    max:      Y[n, c, t] = max_j X_p[n, c, s t + j]                  (X_p padded with -inf)
              dX_p[n, c, s t + j*] += dY[n, c, t]   at the first maximising offset j*
    average:  Y[n, c, t] = 1/|V_t| sum_{j in V_t} X_p[n, c, s t + j]  (V_t: offsets inside X)
              dX_p[n, c, s t + j] += dY[n, c, t] / |V_t|   for j in V_t

    global (over all S positions):  the same with one window covering the whole input

All the window arithmetic (padding, output size, the strided view of one offset) lives in
:class:`Window`; im2col, col2im and pooling are loops over its offsets, each step a whole-array
numpy operation (no loop over examples or positions). Every layer keeps its buffers from batch to
batch (:class:`._deep.Buffers`), so a step allocates nothing once the first batch has run.
"""

import itertools
import math

import numpy as np

from ._deep import Buffers


def output_length(length, kernel, stride=1, pad_before=0, pad_after=0):
    """Number of window positions along one axis: floor((L + p_b + p_a - k) / s) + 1
    (<= 0 when the window does not fit)."""
    return (length + pad_before + pad_after - kernel) // stride + 1


def same_padding(kernel):
    """(before, after) padding that keeps the length at stride 1: k - 1 entries in all, the
    extra one after when k is even (PyTorch's ``padding='same'``)."""
    return (kernel - 1) // 2, kernel // 2


def ceil_padding(length, kernel):
    """(before, after) padding so that non-overlapping windows of ``kernel`` (stride = kernel)
    cover all ``length`` entries: ceil(L / k) windows, the last one partly padding."""
    return 0, -length % kernel


def _as_tuple(value, d, name):
    values = (value,) * d if np.ndim(value) == 0 else tuple(value)
    if len(values) != d:
        raise ValueError(f"{name} needs {d} value(s), one per spatial axis, got {value!r}.")
    return tuple(int(v) for v in values)


class Window:
    """The geometry of a window sliding over the ``d`` trailing axes of an (n, C, *L) array.

    Parameters
    ----------
    size : tuple of int
        Spatial size L of the input.
    kernel, stride : tuple of int
        Window size k and step s along each spatial axis.
    padding : tuple of (int, int)
        (before, after) padding along each spatial axis.
    """

    def __init__(self, size, kernel, stride, padding):
        self.size, self.kernel, self.stride, self.padding = size, kernel, stride, padding
        self.padded = tuple(L + b + a for L, (b, a) in zip(size, padding, strict=True))
        self.out = tuple(
            output_length(L, k, s, b, a)
            for L, k, s, (b, a) in zip(size, kernel, stride, padding, strict=True)
        )
        if min(self.out) < 1:
            raise ValueError(
                f"A window of size {kernel} does not fit in an input of size {size} padded to "
                f"{self.padded}."
            )
        self.offsets = list(itertools.product(*(range(k) for k in kernel)))

    @property
    def has_padding(self):
        return any(b or a for b, a in self.padding)

    def at(self, X_p, offset):
        """The view ``V[n, c, t] = X_p[n, c, s t + j]`` of one offset j: shape (n, C, *L_out)."""
        index = tuple(
            slice(j, j + s * (o - 1) + 1, s)
            for j, s, o in zip(offset, self.stride, self.out, strict=True)
        )
        return X_p[(..., *index)]

    def interior(self, X_p):
        """The unpadded part of a padded array."""
        return X_p[
            (..., *(slice(b, b + L) for L, (b, _) in zip(self.size, self.padding, strict=True)))
        ]

    def pad(self, X, out, value):
        """X padded with ``value``, written into ``out`` (or X itself without padding)."""
        if not self.has_padding:
            return X
        out.fill(value)
        self.interior(out)[...] = X
        return out

    def valid_counts(self):
        """|V_t|: how many entries of each window lie inside the unpadded input, shape L_out.
        The count is a product over the axes of the per-axis counts."""
        counts = 1
        axes = zip(self.size, self.kernel, self.stride, self.padding, self.out, strict=True)
        for L, k, s, (b, _), o in axes:
            first = np.arange(o) * s - b  # input index of each window's first entry
            axis = np.minimum(first + k, L) - np.maximum(first, 0)
            counts = np.multiply.outer(counts, axis)
        return counts


class Convolution:
    """Convolution with ``d = len(kernel)`` spatial axes (1-D over time, 2-D over frequency x
    time): ``Y[n, f, t] = b[f] + sum_{c, j} W[f, c, j] X_p[n, c, s t + j]``.

    Parameters
    ----------
    kernel : tuple of int
        Kernel size k per spatial axis (its length sets d).
    stride : int or tuple of int, default=1
    padding : int, tuple of int or tuple of (int, int), default=0
        Zeros added before and after each spatial axis: one int for all, one per axis, or a
        (before, after) pair per axis.
    """

    def __init__(self, kernel, stride=1, padding=0):
        self.kernel = tuple(int(k) for k in kernel)
        d = len(self.kernel)
        self.stride = _as_tuple(stride, d, "stride")
        if np.ndim(padding) == 0:
            padding = ((padding, padding),) * d
        self.padding = tuple((p, p) if np.ndim(p) == 0 else tuple(p) for p in padding)
        self.buffers = Buffers()

    def forward(self, X, W, b):
        n, C = X.shape[:2]
        F = W.shape[0]
        dtype = X.dtype
        self.window = window = Window(X.shape[2:], self.kernel, self.stride, self.padding)
        X_p = window.pad(X, self.buffers.get("X_p", (n, C, *window.padded), dtype), 0)
        cols = self.buffers.get("cols", (C, len(window.offsets), n, *window.out), dtype)
        for i, offset in enumerate(window.offsets):
            cols[:, i] = window.at(X_p, offset).swapaxes(0, 1)
        self.input_shape = X.shape
        self.cols = cols.reshape(C * len(window.offsets), -1)
        Z = np.matmul(
            W.reshape(F, -1), self.cols, out=self.buffers.get("Z", (F, self.cols.shape[1]), dtype)
        )
        Y = self.buffers.get("Y", (n, F, *window.out), dtype)
        np.add(
            Z.reshape(F, n, *window.out).swapaxes(0, 1),
            b.reshape(F, *(1,) * len(window.out)),
            out=Y,
        )
        return Y

    def backward(self, dY, W, dW, db, *, input_grad=True):
        """Fill dW and db from dY = dL/dY; return dL/dX unless ``input_grad`` is False."""
        window, dtype = self.window, dY.dtype
        n, F = dY.shape[:2]
        dZ = self.buffers.get("dZ", (F, n, *window.out), dtype)
        dZ[...] = dY.swapaxes(0, 1)
        dZ = dZ.reshape(F, -1)
        np.sum(dZ, axis=1, out=db)
        np.matmul(dZ, self.cols.T, out=dW.reshape(F, -1))
        if not input_grad:
            return None
        dcols = np.matmul(
            W.reshape(F, -1).T, dZ, out=self.buffers.get("dcols", self.cols.shape, dtype)
        )
        C = self.input_shape[1]
        dcols = dcols.reshape(C, len(window.offsets), n, *window.out)
        dX_p = self.buffers.zeros("dX_p", (n, C, *window.padded), dtype)
        for i, offset in enumerate(window.offsets):
            view = window.at(dX_p, offset)
            view += dcols[:, i].swapaxes(0, 1)
        return window.interior(dX_p)


class Pooling:
    """Max or average pooling with ``d = len(kernel)`` spatial axes (see the module docstring).

    Parameters
    ----------
    kernel : tuple of int
        Window size per spatial axis.
    stride : int, tuple of int or None, default=None
        Step per axis; None means the window size (non-overlapping windows).
    padding : int, tuple of int or tuple of (int, int), default=0
        Entries added before and after each spatial axis; they never win a maximum and are not
        counted in an average.
    mode : {'max', 'avg'}, default='max'
    """

    def __init__(self, kernel, stride=None, padding=0, mode="max"):
        self.kernel = tuple(int(k) for k in kernel)
        d = len(self.kernel)
        self.stride = self.kernel if stride is None else _as_tuple(stride, d, "stride")
        if np.ndim(padding) == 0:
            padding = ((padding, padding),) * d
        self.padding = tuple((p, p) if np.ndim(p) == 0 else tuple(p) for p in padding)
        if mode not in ("max", "avg"):
            raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}.")
        self.mode = mode
        self.buffers = Buffers()

    def forward(self, X):
        n, C = X.shape[:2]
        dtype = X.dtype
        self.window = window = Window(X.shape[2:], self.kernel, self.stride, self.padding)
        fill = -np.inf if self.mode == "max" else 0
        X_p = window.pad(X, self.buffers.get("X_p", (n, C, *window.padded), dtype), fill)
        Y = self.buffers.get("Y", (n, C, *window.out), dtype)
        first, *rest = window.offsets
        Y[...] = window.at(X_p, first)
        if self.mode == "max":
            # argmax[n, c, t] = index of the first offset holding the maximum
            index_type = np.uint8 if len(window.offsets) <= 256 else np.intp
            self.argmax = argmax = self.buffers.zeros("argmax", Y.shape, index_type)
            better = self.buffers.get("better", Y.shape, bool)
            for i, offset in enumerate(rest, start=1):
                candidate = window.at(X_p, offset)
                np.greater(candidate, Y, out=better)
                np.copyto(Y, candidate, where=better)
                np.copyto(argmax, i, where=better)
        else:
            for offset in rest:
                Y += window.at(X_p, offset)
            self.counts = window.valid_counts().astype(dtype)
            Y /= self.counts
        self.input_shape = X.shape
        return Y

    def backward(self, dY):
        window, dtype = self.window, dY.dtype
        n, C = self.input_shape[:2]
        dX_p = self.buffers.zeros("dX_p", (n, C, *window.padded), dtype)
        if self.mode == "max":
            routed = self.buffers.get("routed", dY.shape, dtype)
            for i, offset in enumerate(window.offsets):
                np.multiply(dY, self.argmax == i, out=routed)
                view = window.at(dX_p, offset)
                view += routed
        else:
            share = np.divide(dY, self.counts, out=self.buffers.get("share", dY.shape, dtype))
            for offset in window.offsets:
                view = window.at(dX_p, offset)
                view += share
        return window.interior(dX_p)


class GlobalPooling:
    """Pooling over all S spatial positions, (n, C, *L) -> (n, C).

    average: ``Y[n, c] = 1/S sum_t X[n, c, t]``,  ``dX[n, c, t] = dY[n, c] / S``;
    max:     ``Y[n, c] = max_t X[n, c, t]``,  ``dX[n, c, t*] = dY[n, c]`` at the first maximiser.
    """

    def __init__(self, mode="avg"):
        if mode not in ("max", "avg"):
            raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}.")
        self.mode = mode
        self.buffers = Buffers()

    def forward(self, X):
        self.input_shape = X.shape
        n, C = X.shape[:2]
        X = X.reshape(n, C, -1)
        Y = self.buffers.get("Y", (n, C), X.dtype)
        if self.mode == "avg":
            return np.mean(X, axis=2, out=Y)
        self.argmax = np.argmax(X, axis=2, out=self.buffers.get("argmax", (n, C), np.intp))
        return np.take_along_axis(X, self.argmax[:, :, None], axis=2)[:, :, 0]

    def backward(self, dY):
        n, C = self.input_shape[:2]
        S = math.prod(self.input_shape[2:])
        dX = self.buffers.get("dX", (n, C, S), dY.dtype)
        if self.mode == "avg":
            np.multiply(dY[:, :, None], 1.0 / S, out=dX)
        else:
            dX.fill(0)
            np.put_along_axis(dX, self.argmax[:, :, None], dY[:, :, None], axis=2)
        return dX.reshape(self.input_shape)
