"""Convolution and pooling over time (1-D) or frequency x time (2-D).

One implementation serves both: ``d`` spatial axes (1 or 2), a multi-index over them written
``t`` (output position), ``j`` (offset inside the kernel) or ``o`` (offset inside a pooling
window). For one layer::

    X    (C, *L, n)        input: C channels, spatial size L, n examples
    X_p                    X padded by p_before / p_after zeros along each spatial axis
    W    (F, C, *k)        F kernels of size k (stride s), PyTorch's layout of the weights
    L_out = floor((L + p_before + p_after - k) / s) + 1

Layout. The activations hold PyTorch's axes (n, C, *L) in the order (C, *L, n): the channels
first, because the matrix product of a convolution makes one row per output channel, and the
batch last, so that every copy and elementwise step of im2col, col2im and pooling runs over
contiguous stretches of at least n numbers rather than over the few positions of one row of a
feature map. An array in PyTorch's layout enters as the view ``np.moveaxis(X, 0, -1)``.

Convolution (a cross-correlation, as in every deep-learning library)::

    Z[f, t, n] = sum_{c, j} W[f, c, j] X_p[c, s t + j, n]

im2col gathers the receptive fields as the columns of one matrix,
``cols[(c, j), (t, n)] = X_p[c, s t + j, n]`` of shape (C prod(k), prod(L_out) n), so that with
``W_2`` = W reshaped (F, C prod(k)) the forward pass is one matrix product, ``Z = W_2 cols``, and
so is each half of the backward pass, from ``dZ = dL/dZ``::

    dW_2  = dZ cols^T
    dcols = W_2^T dZ
    dX_p[c, s t + j, n] += dcols[(c, j), (t, n)]        (col2im: one add per offset)
    dX    = dX_p without its padding

Pooling over non-overlapping windows of size P (stride P), the last window possibly partial::

    L' = ceil(L_out / P),    t = P t' + o    (o: offset inside the window, 0 <= o < P)
    max:      Y[f, t', n] = max_o Z[f, P t' + o, n]
              dZ[f, P t' + o*, n] = dY[f, t', n]            (o*: the first maximising offset)
    average:  Y[f, t', n] = 1/|V_t'| sum_{o in V_t'} Z[f, P t' + o, n]
              dZ[f, P t' + o, n] = dY[f, t', n] / |V_t'|     (V_t': the offsets with t < L_out)

The columns of a pooled convolution are ordered *offset-major*, (o, t', n), so that ``Z`` comes
out as (F, P, *L', n): pooling is then an elementwise maximum or sum of P contiguous blocks, and
its backward pass writes the P blocks of ``dZ`` in the order the convolution's backward product
reads them. (The positions of a partial last window that lie past L_out are computed on zero
padding and then ignored: -inf for the maximum, left out of the mean, zero gradient.)

Global pooling reduces all S positions: ``Y[n, c] = 1/S sum_t X[c, t, n]`` (or the maximum).

Every layer keeps its buffers from batch to batch (:class:`._deep.Buffers`), so a training step
allocates nothing once the first batch has run.
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
    """(before, after) padding that keeps the length at stride 1: k - 1 zeros in all, the
    extra one after when k is even (PyTorch's ``padding='same'``)."""
    return (kernel - 1) // 2, kernel // 2


def _per_axis(value, d, name):
    values = (value,) * d if np.ndim(value) == 0 else tuple(value)
    if len(values) != d:
        raise ValueError(f"{name} needs {d} value(s), one per spatial axis, got {value!r}.")
    return tuple(int(v) for v in values)


def _padding_pairs(padding, d):
    """One (before, after) pair per axis from an int, one int per axis, or pairs."""
    if np.ndim(padding) == 0:
        return ((int(padding),) * 2,) * d
    pairs = tuple((p, p) if np.ndim(p) == 0 else tuple(p) for p in padding)
    if len(pairs) != d:
        raise ValueError(f"padding needs {d} value(s), one per spatial axis, got {padding!r}.")
    return tuple((int(b), int(a)) for b, a in pairs)


def _spatial(index):
    """An index of the spatial axes of a (C, *L, n) array."""
    return (slice(None), *index, slice(None))


class Window:
    """Where a (pooled) convolution reads, for an input of spatial size ``size``.

    Per axis: kernel k, stride s, padding (b, a), pooling window P (1: no pooling)::

        L_out = floor((L + b + a - k) / s) + 1      convolution outputs
        L'    = ceil(L_out / P)                     pooled outputs (the last window may be partial)

    Output ``t = P t' + o`` reads the padded input at ``s (P t' + o) + j = m t' + (s o + j)``, with
    the period ``m = s P``. Split into phases, ``X_s[phi, u] = X_p[m u + phi]``, that read is
    the contiguous run ``X_s[(s o + j) mod m, (s o + j) div m + t']`` over t' (per axis), so
    im2col and col2im move contiguous blocks only; the split (one strided copy of the input) and
    its inverse are done once per layer and batch.
    """

    def __init__(self, size, kernel, stride, padding, pool):
        self.size, self.kernel, self.stride = size, kernel, stride
        self.padding, self.pool = padding, pool
        axes = list(zip(size, kernel, stride, padding, pool, strict=True))
        self.conv_out = tuple(output_length(L, k, s, b, a) for L, k, s, (b, a), _ in axes)
        if min(self.conv_out) < 1:
            padded = tuple(L + b + a for L, _, _, (b, a), _ in axes)
            raise ValueError(
                f"A kernel of size {kernel} does not fit in an input of size {size} padded to "
                f"{padded}."
            )
        self.out = tuple(-(-L // P) for L, P in zip(self.conv_out, pool, strict=True))
        self.period = tuple(s * P for s, P in zip(stride, pool, strict=True))
        # phase-split length: room for the last read, (s (P - 1) + k - 1) div m + L', and the input
        split_length = tuple(
            max((s * (P - 1) + k - 1) // m + Lp, -(-(b + L) // m))
            for (L, k, s, (b, _), P), m, Lp in zip(axes, self.period, self.out, strict=True)
        )
        self.kernel_offsets = list(itertools.product(*(range(k) for k in kernel)))
        self.pool_offsets = list(itertools.product(*(range(P) for P in pool)))
        self.phases = list(itertools.product(*(range(m) for m in self.period)))
        # No padding, no period and no extra room: the input is its own split.
        self.identity = self.period == (1,) * len(size) and split_length == tuple(size)
        self.split_shape = split_length if self.identity else (*self.period, *split_length)
        # reads[i][q]: the index of kernel offset i and pooling offset q, built once
        self.reads = [
            [self._read_index(j, o) for o in self.pool_offsets] for j in self.kernel_offsets
        ]
        # (split, input) index pairs of the phases that hold input entries, built once
        self.phase_indices = [
            index for index in map(self._phase_slices, self.phases) if index is not None
        ]

    def _read_index(self, j, o):
        if self.identity:
            return _spatial(slice(ji, ji + Lp) for ji, Lp in zip(j, self.out, strict=True))
        r = [s * oi + ji for ji, oi, s in zip(j, o, self.stride, strict=True)]
        phase = tuple(ri % m for ri, m in zip(r, self.period, strict=True))
        shift = (
            slice(ri // m, ri // m + Lp) for ri, m, Lp in zip(r, self.period, self.out, strict=True)
        )
        return _spatial((*phase, *shift))

    def read(self, X_s, j, o):
        """The view ``V[c, t', n] = X_p[c, s (P t' + o) + j, n]`` of a split input X_s (see
        :meth:`split`), shape (C, *L', n)."""
        return X_s[self._read_index(j, o)]

    def _phase_slices(self, phase):
        """For one phase, the (split, input) indices: the split positions u and the input
        entries X[m u + phi - b] they hold, or None when the phase holds no input entry."""
        split, source = [], []
        for phi, m, L, (b, _) in zip(phase, self.period, self.size, self.padding, strict=True):
            first = -(-(b - phi) // m)  # the first u with m u + phi - b >= 0
            stop = -(-(b + L - phi) // m)
            if stop <= first:
                return None
            split.append(slice(first, stop))
            start = m * first + phi - b
            source.append(slice(start, start + m * (stop - first - 1) + 1, m))
        return _spatial((*phase, *split)), _spatial(source)

    def split(self, X, out):
        """X (C, *L, n), any strides, padded with zeros and split into phases: written into
        ``out`` of shape (C, *split_shape, n), or X itself when no split is needed."""
        if self.identity:
            return X
        out.fill(0)
        for split, source in self.phase_indices:
            out[split] = X[source]
        return out

    def merge(self, X_s, out):
        """The inverse of :meth:`split` on the input's entries (padding dropped): ``out``
        (C, *L, n) from a split array."""
        if self.identity:
            return X_s
        for split, source in self.phase_indices:
            out[source] = X_s[split]
        return out

    def phantoms(self, o):
        """The index of the pooled positions t' of offset o whose output P t' + o lies past
        L_out (a partial last window), one per axis that has some, as a list of indices of a
        (C, *L', n) array."""
        indices = []
        for axis, (Lo, oi, P, Lp) in enumerate(
            zip(self.conv_out, o, self.pool, self.out, strict=True)
        ):
            first = -(-(Lo - oi) // P)
            if first < Lp:
                indices.append(_spatial((*(slice(None),) * axis, slice(first, None))))
        return indices

    def valid_counts(self):
        """|V_t'|: the offsets of each pooling window that are real outputs, shape (*L', 1).
        A product over the axes of min(P, L_out - P t')."""
        counts = np.array(1)
        for Lo, P, Lp in zip(self.conv_out, self.pool, self.out, strict=True):
            counts = np.multiply.outer(counts, np.minimum(P, Lo - P * np.arange(Lp)))
        return counts[..., None]


class Convolution:
    """Convolution with ``d = len(kernel)`` spatial axes, without bias (see the module
    docstring): ``Z[f, o, t', n] = sum_{c, j} W[f, c, j] X_p[c, s (P t' + o) + j, n]``.

    Parameters
    ----------
    kernel : tuple of int
        Kernel size k per spatial axis (its length sets d).
    stride : int or tuple of int, default=1
    padding : int, tuple of int or tuple of (int, int), default=0
        Zeros added before and after each spatial axis: one int for all, one per axis, or a
        (before, after) pair per axis.
    pool : tuple of int or None, default=None
        Window P of the pooling that follows: the outputs come out offset-major, (F, P, *L', n).
        None is P = 1: (F, 1, *L_out, n).
    """

    def __init__(self, kernel, stride=1, padding=0, pool=None):
        self.kernel = tuple(int(k) for k in kernel)
        d = len(self.kernel)
        self.stride = _per_axis(stride, d, "stride")
        self.padding = _padding_pairs(padding, d)
        self.pool = (1,) * d if pool is None else _per_axis(pool, d, "pool")
        self.buffers = Buffers()
        self._windows = {}

    def window(self, size):
        """The :class:`Window` of an input of spatial size ``size`` (cached)."""
        size = tuple(size)
        if size not in self._windows:
            self._windows[size] = Window(size, self.kernel, self.stride, self.padding, self.pool)
        return self._windows[size]

    def forward(self, X, W):
        """X (C, *L, n), any strides -> Z (F, P, *L', n), a reused buffer."""
        C, n = X.shape[0], X.shape[-1]
        F, dtype = W.shape[0], X.dtype
        self.win = win = self.window(X.shape[1:-1])
        X_s = win.split(X, self.buffers.get("X_s", (C, *win.split_shape, n), dtype))
        K, P = len(win.kernel_offsets), len(win.pool_offsets)
        cols = self.buffers.get("cols", (C, K, P, *win.out, n), dtype)
        for i, reads in enumerate(win.reads):
            for q, index in enumerate(reads):
                np.copyto(cols[:, i, q], X_s[index])
        self.cols = cols.reshape(C * K, -1)
        self.input_shape = X.shape
        Z = self.buffers.get("Z", (F, self.cols.shape[1]), dtype)
        np.matmul(W.reshape(F, -1), self.cols, out=Z)
        return Z.reshape(F, P, *win.out, n)

    def backward(self, dZ, W, dW, *, input_grad=True):
        """Fill dW from dZ = dL/dZ (F, P, *L', n); return dL/dX (C, *L, n) unless
        ``input_grad`` is False."""
        win, dtype = self.win, dZ.dtype
        F = W.shape[0]
        dZ = dZ.reshape(F, -1)
        np.matmul(dZ, self.cols.T, out=dW.reshape(F, -1))
        if not input_grad:
            return None
        dcols = self.buffers.get("dcols", self.cols.shape, dtype)
        np.matmul(W.reshape(F, -1).T, dZ, out=dcols)
        C, n = self.input_shape[0], self.input_shape[-1]
        K, P = len(win.kernel_offsets), len(win.pool_offsets)
        dcols = dcols.reshape(C, K, P, *win.out, n)
        dX_s = self.buffers.zeros("dX_s", (C, *win.split_shape, n), dtype)
        for i, reads in enumerate(win.reads):
            for q, index in enumerate(reads):
                view = dX_s[index]
                view += dcols[:, i, q]
        return win.merge(dX_s, self.buffers.get("dX", self.input_shape, dtype))


class Pooling:
    """Max or average pooling of an offset-major convolution output (F, P, *L', n) over its P
    window offsets, to (F, *L', n) (see the module docstring).

    Parameters
    ----------
    mode : {'max', 'avg'}
    """

    def __init__(self, mode="max"):
        if mode not in ("max", "avg"):
            raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}.")
        self.mode = mode
        self.buffers = Buffers()

    def forward(self, Z, window):
        """Z (F, P, *L', n), the output of a :class:`Convolution` with this ``window``; its
        phantom positions are overwritten (-inf for the maximum, 0 for the mean)."""
        self.win = window
        P, dtype = Z.shape[1], Z.dtype
        for q, o in enumerate(window.pool_offsets):
            for index in window.phantoms(o):
                Z[:, q][index] = -np.inf if self.mode == "max" else 0
        self.shape = Z.shape
        Y = self.buffers.get("Y", (Z.shape[0], *Z.shape[2:]), dtype)
        Y[...] = Z[:, 0]
        if self.mode == "max":
            # Offsets are visited in increasing order, so the first maximiser is the last q
            # whose Z[:, q] beats the running maximum: max over q of q [Z[:, q] > max_{q' < q}].
            self.argmax = argmax = self.buffers.zeros("argmax", Y.shape, np.uint8)
            better = self.buffers.get("better", Y.shape, bool)
            candidate = self.buffers.get("candidate", Y.shape, np.uint8)
            for q in range(1, P):
                np.greater(Z[:, q], Y, out=better)
                np.maximum(Y, Z[:, q], out=Y)
                np.multiply(better, np.uint8(q), out=candidate)
                np.maximum(argmax, candidate, out=argmax)
        else:
            for q in range(1, P):
                Y += Z[:, q]
            self.counts = window.valid_counts().astype(dtype)
            Y /= self.counts
        return Y

    def backward(self, dY):
        """dY (F, *L', n) -> dZ (F, P, *L', n), zero at the phantom positions."""
        dZ = self.buffers.get("dZ", self.shape, dY.dtype)
        if self.mode == "max":
            routed = self.buffers.get("routed", dY.shape, bool)
            for q in range(self.shape[1]):
                np.equal(self.argmax, q, out=routed)
                np.multiply(dY, routed, out=dZ[:, q])
        else:
            np.divide(dY, self.counts, out=dZ[:, 0])
            for q in range(1, self.shape[1]):
                dZ[:, q] = dZ[:, 0]
            for q, o in enumerate(self.win.pool_offsets):
                for index in self.win.phantoms(o):
                    dZ[:, q][index] = 0
        return dZ


class GlobalPooling:
    """Pooling over all S spatial positions, (C, *L, n) -> (n, C).

    average: ``Y[n, c] = 1/S sum_t X[c, t, n]``,  ``dX[c, t, n] = dY[n, c] / S``;
    max:     ``Y[n, c] = max_t X[c, t, n]``,  ``dX[c, t*, n] = dY[n, c]`` at the first maximiser.
    """

    def __init__(self, mode="avg"):
        if mode not in ("max", "avg"):
            raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}.")
        self.mode = mode
        self.buffers = Buffers()

    def forward(self, X):
        self.input_shape = X.shape
        C, n = X.shape[0], X.shape[-1]
        X = X.reshape(C, -1, n)
        Y = self.buffers.get("Y", (C, n), X.dtype)
        if self.mode == "avg":
            np.mean(X, axis=1, out=Y)
        else:
            self.argmax = np.argmax(X, axis=1, out=self.buffers.get("argmax", (C, n), np.intp))
            Y[...] = np.take_along_axis(X, self.argmax[:, None], axis=1)[:, 0]
        return Y.T

    def backward(self, dY):
        C, n = self.input_shape[0], self.input_shape[-1]
        S = math.prod(self.input_shape[1:-1])
        dX = self.buffers.get("dX", (C, S, n), dY.dtype)
        if self.mode == "avg":
            np.multiply(dY.T[:, None], 1.0 / S, out=dX)
        else:
            dX.fill(0)
            np.put_along_axis(dX, self.argmax[:, None], dY.T[:, None], axis=1)
        return dX.reshape(self.input_shape)
