"""Convolutional networks on frames (e.g. log-mel spectrograms) with a scikit-learn face.

The architecture: blocks of convolution -> activation -> pooling, then global pooling over the
remaining positions (or flattening), then a dense head. ``conv='1d'`` slides kernels along time
with the rows' channels (mel bands) as input channels; ``conv='2d'`` slides them over frequency x
time on the spectrogram as a one-channel image. The layers are in :mod:`._conv`, the training (epochs,
early stopping, optimisers) in :mod:`._deep`.
"""

import math
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from . import _nn
from ._conv import Convolution, GlobalPooling, Pooling, output_length, same_padding
from ._deep import (
    BASE_ATTRIBUTES_DOC,
    BASE_PARAMETERS_DOC,
    DeepClassifierMixin,
    DeepRegressorMixin,
    Dense,
    Dropout,
    FlatNetwork,
    _BaseDeepNet,
)
from ._threads import single_threaded_blas


def _positive_ints(value, name, *, d=None, allow_empty=False):
    """A tuple of positive ints from an int or a sequence (``d`` ints when ``d`` is given: an
    int is repeated), or a ValueError naming the parameter."""
    if isinstance(value, Integral):
        values = (value,) * (d or 1)
    else:
        try:
            values = tuple(value)
        except TypeError:
            values = (value,)
    ok = all(isinstance(v, Integral) and int(v) >= 1 for v in values)
    if not ok or (not values and not allow_empty) or (d is not None and len(values) != d):
        shape = (
            f"a positive int or a sequence of {d} positive int(s), one per spatial axis"
            if d
            else "a sequence of positive ints"
        )
        raise ValueError(f"{name} must be {shape}, got {value!r}.")
    return tuple(int(v) for v in values)


def _check_fit(kernel, pads, size, block):
    """Refuse a kernel longer than the (padded) input of a block, naming the block and the
    lengths ('valid' padding shortens the sequence at every block, pooling halves it)."""
    lengths = [output_length(L, k, 1, *p) for L, k, p in zip(size, kernel, pads, strict=True)]
    if min(lengths) < 1:
        where = "the input" if block == 0 else f"the input of block {block + 1} (after pooling)"
        k, L = (kernel[0], size[0]) if len(size) == 1 else (kernel, size)
        raise ValueError(
            f"kernel_size={k} is longer than the sequence at block {block + 1}: {where} has "
            f"size {L}. Use padding='same', a smaller kernel_size or pool_size, or fewer filters "
            "(blocks)."
        )


class ConvBlock:
    """Convolution -> bias -> activation -> pooling, on arrays laid out (C, *L, n).

    ``A = pool(f(conv(X) + b))``. Max pooling commutes with adding a per-channel bias and with a
    non-decreasing activation (all of ``_nn.ACTIVATIONS`` are), so with max pooling the block
    computes the same ``A = f(maxpool(conv(X)) + b)`` on the pooled, P times smaller array; the
    gradient agrees too, but where a window ties (the first maximiser of the pre-activation gets
    it). Average pooling does not commute with f: ``A = avgpool(f(conv(X) + b))``.
    """

    def __init__(self, kernel, padding, pool, pool_size, activation):
        self.convolution = Convolution(kernel, 1, padding, pool=None if pool is None else pool_size)
        self.pooling = None if pool is None else Pooling(pool)
        self.f, self.f_prime = _nn.ACTIVATIONS[activation], _nn.DERIVATIVES[activation]

    def forward(self, X, W, b):
        Z = self.convolution.forward(X, W)  # (F, P, *L', n)
        bias = b.reshape(-1, *(1,) * (Z.ndim - 2))
        if self.pooling is None:
            Y = Z[:, 0]
            Y += bias
            self.A = self.f(Y)
        elif self.pooling.mode == "max":
            Y = self.pooling.forward(Z, self.convolution.win)
            Y += bias
            self.A = self.f(Y)
        else:
            Z += bias[:, None]
            self.A = self.f(Z)
            Y = self.pooling.forward(Z, self.convolution.win)
        return Y

    def backward(self, dA, W, dW, db, *, input_grad=True):
        """Fill dW and db from dA = dL/dA; return dL/dX unless ``input_grad`` is False."""
        if self.pooling is None or self.pooling.mode == "max":
            dY = self.f_prime(self.A, dA)
            dY.sum(axis=tuple(range(1, dY.ndim)), out=db)
            dZ = dY[:, None] if self.pooling is None else self.pooling.backward(dY)
        else:
            dZ = self.f_prime(self.A, self.pooling.backward(dA))
            dZ.sum(axis=tuple(range(1, dZ.ndim)), out=db)
        return self.convolution.backward(dZ, W, dW, input_grad=input_grad)


class ConvNetwork(FlatNetwork):
    """Conv blocks -> global pooling (or flattening) -> dense head, its parameters in one flat
    buffer. Between the blocks the activations are laid out (C, *L, n) (see :mod:`._conv`); the
    input (n, channels, steps) enters as a view.

    Parameters (all keyword-only; they are the network's ``config``)
    ----------
    input_shape : (int, int)
        (channels, steps) of a row.
    conv : {'1d', '2d'}
    filters : tuple of int
        Output channels of each block.
    kernel, pool_size : tuple of int
        Kernel and pooling window per spatial axis (1 or 2 entries).
    padding : {'same', 'valid'}
    pool : {'max', 'avg'} or None
    global_pool : {'avg', 'max'} or None
        Pooling over all remaining positions before the head; None flattens them instead.
    activation : str
        Key of ``_nn.ACTIVATIONS``, used in the blocks and the hidden dense layers.
    dropout : float
        Rate of the inverted dropout before every dense layer.
    hidden_layer_sizes : tuple of int
        Units of the hidden dense layers of the head (may be empty).
    n_outputs : int
    dtype : numpy floating dtype
    """

    def __init__(
        self,
        *,
        input_shape,
        conv,
        filters,
        kernel,
        padding,
        pool,
        pool_size,
        global_pool,
        activation,
        dropout,
        hidden_layer_sizes,
        n_outputs,
        dtype,
    ):
        self.config = dict(
            input_shape=input_shape,
            conv=conv,
            filters=filters,
            kernel=kernel,
            padding=padding,
            pool=pool,
            pool_size=pool_size,
            global_pool=global_pool,
            activation=activation,
            dropout=dropout,
            hidden_layer_sizes=hidden_layer_sizes,
            n_outputs=n_outputs,
            dtype=dtype,
        )
        channels, steps = input_shape
        # 2-D: the (channels, steps) row is a one-channel image of height channels (frequency)
        self.image = conv == "2d"
        size, in_channels = ((channels, steps), 1) if self.image else ((steps,), channels)
        self.activation = activation
        pads = tuple(same_padding(k) if padding == "same" else (0, 0) for k in kernel)
        self.blocks, layout = [], []
        # (F, C prod(k), positions) of each block's product, per example (see _BaseCNN)
        self.products = []
        for i, out_channels in enumerate(filters):
            block = ConvBlock(kernel, pads, pool, pool_size, activation)
            _check_fit(kernel, pads, size, i)
            window = block.convolution.window(size)
            size = window.out
            self.products.append(
                (out_channels, in_channels * math.prod(kernel), math.prod(window.conv_out))
            )
            self.blocks.append(block)
            layout += [
                (f"W{i}", (out_channels, in_channels, *kernel), True),
                (f"b{i}", (out_channels,), False),
            ]
            in_channels = out_channels
        if global_pool is None:  # flatten: the head sees every position
            self.global_pooling, head_inputs = None, in_channels * math.prod(size)
        else:
            self.global_pooling, head_inputs = GlobalPooling(global_pool), in_channels
        units = (head_inputs, *hidden_layer_sizes, n_outputs)
        self.dense = []
        for j, (fan_in, fan_out) in enumerate(zip(units[:-1], units[1:], strict=True)):
            self.dense.append((Dense(), Dropout(dropout)))
            layout += [(f"V{j}", (fan_in, fan_out), True), (f"c{j}", (fan_out,), False)]
        super().__init__(layout, dtype)

    def initialise(self, rng):
        """Every weight and bias from U(-r, r) with r = 1 / sqrt(fan_in), fan_in = C prod(k)
        for a convolution: PyTorch's default for its Conv and Linear layers. On the contour
        task of bench/deep.py it trained faster than Glorot's bound sqrt(6 / (fan_in +
        fan_out)) (test accuracy at epoch 12 of 3 seeds: 0.87-0.98 against 0.80-0.84 for the
        2-D net, 0.99 against 0.97 for the 1-D one), whose fan-out term F prod(k) shrinks the
        first layer over few channels (r = 0.20 instead of 0.33 for 1 -> 16 channels, 3x3)."""
        names = [(f"W{i}", f"b{i}") for i in range(len(self.blocks))]
        names += [(f"V{j}", f"c{j}") for j in range(len(self.dense))]
        for weights, biases in names:
            W, b = self.p[weights], self.p[biases]
            fan_in = math.prod(W.shape[1:]) if W.ndim > 2 else W.shape[0]
            r = 1 / math.sqrt(fan_in)
            W[...] = rng.uniform(-r, r, W.shape)
            b[...] = rng.uniform(-r, r, b.shape)
        return self

    def forward(self, X, training=False, rng=None):
        f = _nn.ACTIVATIONS[self.activation]
        # (C, *L, n) views of the input: (1, H, W, n) for an image, (C, L, n) for frames
        A = np.moveaxis(X, 0, -1)
        A = A[None] if self.image else A
        for i, block in enumerate(self.blocks):
            A = block.forward(A, self.p[f"W{i}"], self.p[f"b{i}"])
        self._pooled_shape = A.shape
        if self.global_pooling is None:  # (n, F * prod(L')): each example's (F, *L') in C order
            H = A.reshape(-1, A.shape[-1]).T
        else:
            H = self.global_pooling.forward(A)
        self._hidden = []
        last = len(self.dense) - 1
        for j, (dense, dropout) in enumerate(self.dense):
            Z = dense.forward(dropout.forward(H, training, rng), self.p[f"V{j}"], self.p[f"c{j}"])
            H = f(Z) if j < last else Z
            self._hidden.append(H)
        return H

    def backward(self, dZ):
        f_prime = _nn.DERIVATIVES[self.activation]
        for j in range(len(self.dense) - 1, -1, -1):
            if j < len(self.dense) - 1:
                dZ = f_prime(self._hidden[j], dZ)
            dense, dropout = self.dense[j]
            dH = dense.backward(dZ, self.p[f"V{j}"], self.g[f"V{j}"], self.g[f"c{j}"])
            dZ = dropout.backward(dH)
        if self.global_pooling is None:
            dA = dZ.T.reshape(self._pooled_shape)
        else:
            dA = self.global_pooling.backward(dZ)
        for i in range(len(self.blocks) - 1, -1, -1):
            dA = self.blocks[i].backward(
                dA, self.p[f"W{i}"], self.g[f"W{i}"], self.g[f"b{i}"], input_grad=i > 0
            )


_CNN_PARAMETERS_DOC = """    filters : int or sequence of int, default=(32, 64)
        Output channels of each convolutional block (one block per entry).

    conv : {'1d', '2d'}, default='1d'
        '1d': kernels slide along time, a row's channels (mel bands) are the input channels.
        '2d': kernels slide over frequency x time, a row is a one-channel image of
        ``input_shape``.

    kernel_size : int or (int, int), default=5
        Kernel length (1-D), or (frequency, time) extent (2-D; an int is square).

    padding : {'same', 'valid'}, default='same'
        'same' pads with zeros so that a convolution keeps the length; 'valid' does not pad, so
        each block shortens the sequence by ``kernel_size - 1``.

    pool : {'max', 'avg'} or None, default='max'
        Pooling after each block's activation, over non-overlapping windows of ``pool_size``
        (a last partial window is pooled over the entries it holds). None: no pooling.

    pool_size : int or (int, int), default=2
        Pooling window (1-D), or (frequency, time) window (2-D; an int is square).

    global_pool : {'avg', 'max'} or None, default='avg'
        Pooling of each channel over all the positions left after the blocks, so the head sees
        what happened, not where. None flattens the positions into the head instead (the head
        then knows where; its input size depends on the length of the rows).

    activation : {'relu', 'leaky_relu', 'tanh', 'sigmoid', 'identity'}, default='relu'
        Activation of the blocks and of the hidden dense layers.

    dropout : float, default=0.0
        Rate of the (inverted) dropout applied during training before every dense layer.

    hidden_layer_sizes : int or sequence of int, default=()
        Hidden dense layers between the global pooling and the output layer (none by default).
"""

_CNN_NOTES = """    Block ``i`` maps ``A_{i-1}`` (n, C, *L) to

    .. math::
        Z_i[n, f, t] = b_i[f] + \\sum_{c, j} W_i[f, c, j] \\, A_{i-1}[n, c, t + j - p],
        \\qquad A_i = \\mathrm{pool}(\\sigma(Z_i)),

    global average pooling gives :math:`h[n, f] = \\frac{1}{S} \\sum_t A_B[n, f, t]`
    (max pooling the maximum over t; without global pooling ``h`` is ``A_B`` flattened), and
    the dense head maps ``h`` to the logits. Max pooling commutes with the bias and with the
    (non-decreasing) activation, so it is taken first, on the convolution's output. Each
    convolution, forward and backward, is one matrix product on im2col columns; the memory of a
    training step is bounded by the batch. Weights and biases start from
    :math:`U(-1/\\sqrt{n_{in}}, 1/\\sqrt{n_{in}})`, PyTorch's default, with
    :math:`n_{in} = C \\prod k` inputs to one position of a convolution."""


class _BaseCNN(_BaseDeepNet):
    """The convolutional architecture: its parameters and its network."""

    _parameter_constraints: dict = {
        **_BaseDeepNet._parameter_constraints,
        "filters": ["array-like", Interval(Integral, 1, None, closed="left")],
        "conv": [StrOptions({"1d", "2d"})],
        "kernel_size": ["array-like", Interval(Integral, 1, None, closed="left")],
        "padding": [StrOptions({"same", "valid"})],
        "pool": [StrOptions({"max", "avg"}), None],
        "pool_size": ["array-like", Interval(Integral, 1, None, closed="left")],
        "global_pool": [StrOptions({"avg", "max"}), None],
        "activation": [StrOptions(set(_nn.ACTIVATIONS))],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        filters=(32, 64),
        *,
        conv="1d",
        kernel_size=5,
        padding="same",
        pool="max",
        pool_size=2,
        global_pool="avg",
        activation="relu",
        dropout=0.0,
        hidden_layer_sizes=(),
        solver="adam",
        learning_rate_init=1e-3,
        alpha=1e-4,
        batch_size=64,
        max_iter=200,
        shuffle=True,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        clip_norm=None,
        input_shape=None,
        dtype=np.float32,
        random_state=None,
        verbose=False,
    ):
        super().__init__(
            solver=solver,
            learning_rate_init=learning_rate_init,
            alpha=alpha,
            batch_size=batch_size,
            max_iter=max_iter,
            shuffle=shuffle,
            tol=tol,
            n_iter_no_change=n_iter_no_change,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            clip_norm=clip_norm,
            input_shape=input_shape,
            dtype=dtype,
            random_state=random_state,
            verbose=verbose,
        )
        self.filters = filters
        self.conv = conv
        self.kernel_size = kernel_size
        self.padding = padding
        self.pool = pool
        self.pool_size = pool_size
        self.global_pool = global_pool
        self.activation = activation
        self.dropout = dropout
        self.hidden_layer_sizes = hidden_layer_sizes

    def _build_network(self, input_shape, n_outputs, dtype):
        d = 2 if self.conv == "2d" else 1
        filters = _positive_ints(self.filters, "filters")
        kernel = _positive_ints(self.kernel_size, "kernel_size", d=d)
        pool_size = _positive_ints(self.pool_size, "pool_size", d=d)
        hidden = _positive_ints(self.hidden_layer_sizes, "hidden_layer_sizes", allow_empty=True)
        return ConvNetwork(
            input_shape=input_shape,
            conv=self.conv,
            filters=filters,
            kernel=kernel,
            padding=self.padding,
            pool=self.pool,
            pool_size=pool_size,
            global_pool=self.global_pool,
            activation=self.activation,
            dropout=float(self.dropout),
            hidden_layer_sizes=hidden,
            n_outputs=n_outputs,
            dtype=dtype,
        )

    def _blas_threads(self):
        # As for the MLP (_nn.SINGLE_THREAD_PRODUCT): below that many multiply-adds in the
        # largest product of a step, here a convolution's (F, C k) x (C k, positions x batch),
        # a second BLAS thread costs more than it saves, and it fights other thread pools.
        largest = max(math.prod(shape) for shape in self._network.products) * self.batch_size
        if largest >= _nn.SINGLE_THREAD_PRODUCT:
            return super()._blas_threads()
        return single_threaded_blas()


class CNNClassifier(DeepClassifierMixin, _BaseCNN):
    __doc__ = f"""Convolutional network classifier on frames (e.g. a log-mel spectrogram).

    Conv blocks (convolution -> activation -> pooling) -> global pooling -> dense head ->
    one sigmoid output (two classes, binary cross-entropy) or a softmax (more classes,
    cross-entropy). Rows of X stay 2-D: ``input_shape=(channels, steps)`` says how a row folds
    into frames; without it a row is one channel of ``n_features`` steps.

    Parameters
    ----------
{_CNN_PARAMETERS_DOC}
{BASE_PARAMETERS_DOC}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.

{BASE_ATTRIBUTES_DOC}

    See Also
    --------
    CNNRegressor : The same network with identity outputs and the squared error.
    MLPClassifier : A dense network, for features that do not keep the time axis.

    Notes
    -----
{_CNN_NOTES}

    Examples
    --------
    A rising or a falling ramp at a random place in noise: the class is the order of the
    values, which a convolution sees wherever it happens.

    >>> import numpy as np
    >>> from mlx.estimators import CNNClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 300)
    >>> X = rng.normal(scale=0.3, size=(300, 24))
    >>> for row, label, start in zip(X, y, rng.integers(0, 20, 300)):
    ...     row[start : start + 4] += np.linspace(-2, 2, 4) * (1 if label else -1)
    >>> clf = CNNClassifier((8, 8), kernel_size=4, learning_rate_init=0.01, max_iter=30,
    ...                     random_state=0)
    >>> clf.fit(X[:200], y[:200]).score(X[200:], y[200:]) > 0.9
    True
    >>> clf.predict_proba(X[:1]).shape
    (1, 2)
    """


class CNNRegressor(DeepRegressorMixin, _BaseCNN):
    __doc__ = f"""Convolutional network regressor on frames (e.g. a log-mel spectrogram).

    The network of :class:`CNNClassifier` with identity outputs (one per target) and the halved
    mean squared error. The targets are not scaled: scale them (``TransformedTargetRegressor``)
    when they are far from unit size.

    Parameters
    ----------
{_CNN_PARAMETERS_DOC}
{BASE_PARAMETERS_DOC}

    Attributes
    ----------
{BASE_ATTRIBUTES_DOC}

    See Also
    --------
    CNNClassifier : The same network for classes.

    Notes
    -----
{_CNN_NOTES}

    Examples
    --------
    The height of a bump, wherever it sits:

    >>> import numpy as np
    >>> from mlx.estimators import CNNRegressor
    >>> rng = np.random.default_rng(0)
    >>> height = rng.uniform(0.5, 2, 300)
    >>> X = rng.normal(scale=0.1, size=(300, 20))
    >>> X[np.arange(300), rng.integers(0, 20, 300)] += height
    >>> reg = CNNRegressor((8,), kernel_size=3, learning_rate_init=0.03, max_iter=100,
    ...                    random_state=0)
    >>> reg.fit(X[:200], height[:200]).score(X[200:], height[200:]) > 0.8
    True
    """
