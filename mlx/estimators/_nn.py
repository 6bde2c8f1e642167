"""The numerics of a fully connected network: activations, losses, initialisers, optimisers,
forward and backward propagation, and one training epoch.

Notation (one mini-batch of ``n`` rows, layers ``l = 1..L``)::

    A_0 = X
    Z_l = A_{l-1} W_l + b_l                       (pre-activation)
    A_l = f(Z_l)          for hidden layers       (f: the hidden activation)
    y_hat = g(Z_L)                                (g: the output function of the loss)

    dZ_L = dL/dZ_L = (y_hat - Y) / n              (canonical link: g matched to the loss)
    dW_l = A_{l-1}^T dZ_l + (alpha / n) W_l
    db_l = 1^T dZ_l
    dA_{l-1} = dZ_l W_l^T
    dZ_{l-1} = dA_{l-1} * f'(Z_{l-1})

Every ``f'`` is written in terms of the layer's output ``A = f(Z)``, so the forward pass keeps
only the activations. The parameters live in one flat buffer (all weights, then all biases), so
an optimiser step is a handful of whole-array numpy calls, and the buffers of a mini-batch are
allocated once per epoch and written in place.
"""

import contextlib
from itertools import pairwise

import numpy as np
from scipy.special import expit

from mlx.estimators._threads import single_threaded_blas

# --- activations ----------------------------------------------------------------------------
# Each activation overwrites Z with f(Z) and returns it; each derivative multiplies the
# back-propagated dA in place by f'(Z), computed from the output A = f(Z).

LEAKY_RELU_SLOPE = 0.01


def identity(Z):
    """f(z) = z."""
    return Z


def relu(Z):
    """f(z) = max(z, 0)."""
    return np.maximum(Z, 0, out=Z)


def leaky_relu(Z):
    """f(z) = z if z > 0 else 0.01 z (max(z, 0.01 z), as the slope is below 1)."""
    return np.maximum(Z, LEAKY_RELU_SLOPE * Z, out=Z)


def tanh(Z):
    """f(z) = tanh(z)."""
    return np.tanh(Z, out=Z)


def sigmoid(Z):
    """f(z) = 1 / (1 + exp(-z)).

    scipy's ``expit`` never forms ``exp(-z)`` for very negative z, so inputs of +-1e4 give 0 and 1
    without an overflow.
    """
    return expit(Z, out=Z)


def identity_derivative(A, dA):
    """f'(z) = 1."""
    return dA


def relu_derivative(A, dA):
    """f'(z) = 1 if z > 0 else 0, and z > 0 exactly where A > 0."""
    dA *= A > 0
    return dA


def leaky_relu_derivative(A, dA):
    """f'(z) = 1 if z > 0 else 0.01 (A has the sign of z)."""
    dA *= np.where(A > 0, 1.0, LEAKY_RELU_SLOPE).astype(dA.dtype, copy=False)
    return dA


def tanh_derivative(A, dA):
    """f'(z) = 1 - tanh(z)^2 = 1 - A^2."""
    dA *= 1 - A * A
    return dA


def sigmoid_derivative(A, dA):
    """f'(z) = sigma(z) (1 - sigma(z)) = A (1 - A)."""
    dA *= A * (1 - A)
    return dA


ACTIVATIONS = {
    "identity": identity,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "tanh": tanh,
    "sigmoid": sigmoid,
}
DERIVATIVES = {
    "identity": identity_derivative,
    "relu": relu_derivative,
    "leaky_relu": leaky_relu_derivative,
    "tanh": tanh_derivative,
    "sigmoid": sigmoid_derivative,
}

# --- output functions -----------------------------------------------------------------------


EXP_SPAN = 80.0  # e^-80 ~ 1.8e-35 is still a normal float32


def shift_rows(Z):
    """Subtract from each row an upper bound m_i of its entries, in place, such that every
    row keeps an entry >= -EXP_SPAN: exp() of the result lies in (0, 1] and no row sum
    underflows to 0.

    m_i is the batch maximum when all entries lie within EXP_SPAN of each other (two whole-array
    reductions, where a row-wise maximum over a few columns is ~10x slower), else each row's
    own maximum. The shift cancels in softmax and log-softmax.
    """
    top = Z.max()
    if top - Z.min() <= EXP_SPAN:
        Z -= top
    else:
        Z -= Z.max(axis=1, keepdims=True)
    return Z


def _row_sums(Z):
    return Z @ np.ones((Z.shape[1], 1), dtype=Z.dtype)  # one BLAS call, faster than sum(axis=1)


def softmax(Z):
    """softmax(z)_k = exp(z_k - m) / sum_j exp(z_j - m), row-wise, in place (m: shift_rows)."""
    np.exp(shift_rows(Z), out=Z)
    Z /= _row_sums(Z)
    return Z


def log_softmax(Z):
    """log softmax(z)_k = z_k - m - log sum_j exp(z_j - m), row-wise, in place."""
    shift_rows(Z)
    Z -= np.log(_row_sums(np.exp(Z)))
    return Z


def log_sigmoid(Z):
    """log sigma(z) = -log(1 + exp(-z)), in place (``logaddexp`` is the stable softplus)."""
    np.logaddexp(0, -Z, out=Z)
    return np.negative(Z, out=Z)


OUTPUT_FUNCTIONS = {"identity": identity, "sigmoid": sigmoid, "softmax": softmax}

# --- losses ---------------------------------------------------------------------------------
# Each loss takes the logits Z = Z_L of a batch and the targets Y (both (n, k)), returns the
# mean loss over the n rows, and overwrites Z with dL/dZ. Each pairs with the output function
# whose derivative cancels against its own (the canonical link), so dL/dZ = (y_hat - Y) / n.


def squared_error(Z, Y):
    """L = 1/(2 n k) sum_ik (z_ik - y_ik)^2, the halved mean squared error (identity output)."""
    n, k = Z.shape
    Z -= Y
    loss = float(np.vdot(Z, Z)) / (2 * n * k)
    Z *= 1 / (n * k)
    return loss


def binary_cross_entropy(Z, Y):
    """L = -1/n sum_ik [y log sigma(z) + (1 - y) log(1 - sigma(z))] (one sigmoid per column).

    With softplus(z) = log(1 + e^z): -log sigma(z) = softplus(-z) and -log(1 - sigma(z)) =
    softplus(z), so the summand is softplus(z) - y z, computed without forming a probability
    that could round to 0 or 1 (``logaddexp(0, z)`` is the stable softplus).
    """
    n = Z.shape[0]
    loss = (float(np.logaddexp(0, Z).sum()) - float(np.vdot(Y, Z))) / n
    sigmoid(Z)
    Z -= Y
    Z *= 1 / n
    return loss


def cross_entropy(Z, Y):
    """L = -1/n sum_ik y_ik log softmax(z_i)_k, for rows of Y that sum to 1 (softmax output).

    With the shifts m_i of :func:`shift_rows` and s_i = sum_k exp(z_ik - m_i):
    -log softmax(z_i)_k = log s_i - (z_ik - m_i), so
    L = 1/n sum_i [log s_i - sum_k y_ik (z_ik - m_i)].
    """
    n = Z.shape[0]
    shift_rows(Z)
    y_dot_z = float(np.vdot(Y, Z))
    np.exp(Z, out=Z)
    s = _row_sums(Z)
    loss = (float(np.log(s).sum()) - y_dot_z) / n
    Z /= s
    Z -= Y
    Z *= 1 / n
    return loss


LOSSES = {
    "squared_error": squared_error,
    "binary_cross_entropy": binary_cross_entropy,
    "cross_entropy": cross_entropy,
}
LOSS_OUTPUT = {
    "squared_error": "identity",
    "binary_cross_entropy": "sigmoid",
    "cross_entropy": "softmax",
}

# --- initialisers ---------------------------------------------------------------------------


def glorot_uniform_bound(fan_in, fan_out, activation):
    """Glorot & Bengio (2010): U(-r, r) with r = sqrt(6 / (fan_in + fan_out)) keeps the variance
    of activations and gradients about constant through tanh / identity layers. For the sigmoid
    the bound is sqrt(2 / (fan_in + fan_out)) (scikit-learn's choice for its logistic units).

    Rectifiers get Glorot too, not He's sqrt(6 / fan_in) bound made for them: He lost about half
    a point of digits accuracy against scikit-learn's Glorot scheme (8 seeds x 3 splits, a (64,)
    ReLU network, 50 epochs: 0.962 against 0.967)."""
    factor = 2.0 if activation == "sigmoid" else 6.0
    return np.sqrt(factor / (fan_in + fan_out))


# --- the parameters -------------------------------------------------------------------------


class Network:
    """Weights ``W_l`` (n_{l-1}, n_l) and biases ``b_l`` (n_l,) in one flat buffer.

    ``params = [vec(W_1), ..., vec(W_L), b_1, ..., b_L]``: the weights come first so that the L2
    penalty and its gradient touch one contiguous slice, ``params[:n_weights]``. The per-layer
    arrays are views built on demand, so a pickled network is just the buffer.

    Parameters
    ----------
    layer_units : sequence of int
        Units per layer, input and output included: ``(n_features, *hidden, n_outputs)``.
    dtype : numpy floating dtype
    """

    def __init__(self, layer_units, dtype):
        self.layer_units = tuple(int(u) for u in layer_units)
        self.n_weights = sum(a * b for a, b in pairwise(self.layer_units))
        self.params = np.zeros(self.n_weights + sum(self.layer_units[1:]), dtype=dtype)

    @property
    def n_layers(self):
        """L, the number of weight layers."""
        return len(self.layer_units) - 1

    def unflatten(self, flat):
        """Per-layer views ``(coefs, intercepts)`` of a buffer laid out like ``params``."""
        coefs, intercepts = [], []
        start, bias_start = 0, self.n_weights
        for fan_in, fan_out in pairwise(self.layer_units):
            coefs.append(flat[start : start + fan_in * fan_out].reshape(fan_in, fan_out))
            intercepts.append(flat[bias_start : bias_start + fan_out])
            start += fan_in * fan_out
            bias_start += fan_out
        return coefs, intercepts

    @property
    def coefs(self):
        return self.unflatten(self.params)[0]

    @property
    def intercepts(self):
        return self.unflatten(self.params)[1]

    def initialise(self, activation, rng):
        """Draw every W_l and b_l from U(-r, r), r from :func:`glorot_uniform_bound`.

        The draws are made layer by layer, weights then biases, in float64 from a NumPy
        ``RandomState``, so a seed gives the same network in float32 and float64.
        """
        for W, b in zip(*self.unflatten(self.params), strict=True):
            fan_in, fan_out = W.shape
            r = glorot_uniform_bound(fan_in, fan_out, activation)
            W[...] = rng.uniform(-r, r, (fan_in, fan_out))
            b[...] = rng.uniform(-r, r, fan_out)
        return self


# --- optimisers -----------------------------------------------------------------------------


class _Optimiser:
    """What the optimisers share: a scratch buffer for one step, left out of a saved model.

    A fitted estimator keeps its optimiser's state (momenta) to go on training (``warm_start``);
    the scratch buffer holds nothing between steps, so it is not pickled (it was a quarter of
    a pickled MLP) and is allocated again on loading.
    """

    def __init__(self, n_params, dtype):
        self._scratch = np.empty(n_params, dtype=dtype)

    def __getstate__(self):
        state = self.__dict__.copy()
        scratch = state.pop("_scratch")
        state["_scratch_shape"] = (scratch.size, scratch.dtype.str)
        return state

    def __setstate__(self, state):
        state = dict(state)
        size, dtype = state.pop("_scratch_shape")
        self.__dict__.update(state)
        self._scratch = np.empty(size, dtype=dtype)


class SGD(_Optimiser):
    """Stochastic gradient descent with (Nesterov) momentum, on flat buffers.

    v <- mu v - eta g;  theta <- theta + v  (or theta + mu v - eta g with Nesterov's momentum).
    """

    def __init__(self, n_params, dtype, *, learning_rate, momentum=0.9, nesterov=True):
        super().__init__(n_params, dtype)
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity = np.zeros(n_params, dtype=dtype)

    def step(self, params, grads):
        v, eta_g = self.velocity, self._scratch
        np.multiply(grads, self.learning_rate, out=eta_g)
        v *= self.momentum
        v -= eta_g
        if self.nesterov:
            params += self.momentum * v
            params -= eta_g
        else:
            params += v


class Adam(_Optimiser):
    """Adam (Kingma & Ba, 2015) on flat buffers.

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    theta <- theta - eta sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps).
    """

    def __init__(self, n_params, dtype, *, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        super().__init__(n_params, dtype)
        self.learning_rate = learning_rate
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.t = 0
        self.m = np.zeros(n_params, dtype=dtype)
        self.v = np.zeros(n_params, dtype=dtype)

    def step(self, params, grads):
        b1, b2, s = self.beta_1, self.beta_2, self._scratch
        self.t += 1
        self.m *= b1
        np.multiply(grads, 1 - b1, out=s)
        self.m += s
        self.v *= b2
        np.multiply(grads, grads, out=s)
        s *= 1 - b2
        self.v += s
        eta_t = self.learning_rate * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        np.sqrt(self.v, out=s)
        s += self.epsilon
        np.divide(self.m, s, out=s)
        s *= eta_t
        params -= s


# --- forward and backward -------------------------------------------------------------------


class Workspace:
    """Everything one training step writes, allocated once: per-layer views of the parameters
    and of the gradient buffer, the pre-activation and back-propagation buffers for batches of up
    to ``batch_size`` rows, and a vector of ones (column sums as a BLAS product ``1^T dZ``).
    :meth:`views` hands out the first ``n`` rows of the buffers for a smaller batch."""

    def __init__(self, network, grads, batch_size):
        dtype = network.params.dtype
        self.network, self.grads = network, grads
        self.coefs, self.intercepts = network.unflatten(network.params)
        self.coef_grads, self.intercept_grads = network.unflatten(grads)
        units = network.layer_units
        self._Z = [np.empty((batch_size, u), dtype=dtype) for u in units[1:]]
        self._dA = [np.empty((batch_size, u), dtype=dtype) for u in units[1:-1]]
        self._ones = np.ones(batch_size, dtype=dtype)
        self._cache = {}

    def views(self, n):
        """``(Z_out, dA_out, ones)`` for a batch of ``n`` rows."""
        if n not in self._cache:
            self._cache[n] = ([Z[:n] for Z in self._Z], [dA[:n] for dA in self._dA], self._ones[:n])
        return self._cache[n]


def forward(X, coefs, intercepts, activation, Z_out=None):
    """Forward propagation: ``[A_0, A_1, ..., A_{L-1}, Z_L]``.

    The last entry is the output layer's pre-activation (the logits): the output function
    belongs to the loss. ``Z_out`` optionally gives one preallocated (n, n_l) buffer per layer.
    """
    f = ACTIVATIONS[activation]
    last = len(coefs) - 1
    A = [X]
    for i, (W, b) in enumerate(zip(coefs, intercepts, strict=True)):
        Z = np.matmul(A[-1], W, out=None if Z_out is None else Z_out[i])
        Z += b
        A.append(f(Z) if i < last else Z)
    return A


def backward(A, dZ, coefs, coef_grads, intercept_grads, activation, dA_out, ones):
    """Backpropagation from ``dZ = dL/dZ_L``: fills ``coef_grads`` and ``intercept_grads``.

    ``A`` is the list returned by :func:`forward`, ``dA_out`` one (n, n_l) buffer per hidden
    layer and ``ones`` a vector of n ones. The L2 term is added by the caller on the flat buffer.
    """
    f_prime = DERIVATIVES[activation]
    for i in range(len(coefs) - 1, -1, -1):  # i = l - 1: coefs[i] is W_l, A[i] is A_{l-1}
        np.matmul(A[i].T, dZ, out=coef_grads[i])
        np.matmul(ones, dZ, out=intercept_grads[i])
        if i > 0:
            dA = np.matmul(dZ, coefs[i].T, out=dA_out[i - 1])
            dZ = f_prime(A[i], dA)


def loss_and_gradient(network, grads, X, Y, *, activation, loss, alpha, workspace=None):
    """The mini-batch objective and its gradient (written into the flat ``grads``).

    J = L(Y, g(Z_L)) + alpha / (2 n) ||W||^2 over all weights (not the biases), the
    penalty scaled by the batch size as in scikit-learn. ``workspace`` (built for these
    ``network`` and ``grads``) saves the allocations when called batch after batch.
    """
    n = X.shape[0]
    ws = Workspace(network, grads, n) if workspace is None else workspace
    Z_out, dA_out, ones = ws.views(n)
    A = forward(X, ws.coefs, ws.intercepts, activation, Z_out)
    J = LOSSES[loss](A[-1], Y)  # A[-1] now holds dL/dZ_L
    backward(A, A[-1], ws.coefs, ws.coef_grads, ws.intercept_grads, activation, dA_out, ones)
    if alpha:
        w = network.params[: network.n_weights]
        J += 0.5 * alpha * float(np.vdot(w, w)) / n
        grads[: network.n_weights] += (alpha / n) * w
    return J


# Below this many multiply-adds in a step's largest product (batch x fan_in x fan_out), a second
# BLAS thread costs more than it saves: waking it takes longer than its share of a small product,
# and its spinning fights scikit-learn's OpenMP pools (bench/estimators.py shows the effect).
SINGLE_THREAD_PRODUCT = 1 << 25


def _blas_threads(layer_units, batch_size):
    """One BLAS thread for small products (see SINGLE_THREAD_PRODUCT), else the default."""
    if batch_size * max(a * b for a, b in pairwise(layer_units)) >= SINGLE_THREAD_PRODUCT:
        return contextlib.nullcontext()
    return single_threaded_blas()


def train_epoch(network, optimizer, X, Y, *, activation, loss, alpha, batch_size, order=None):
    """One pass over (X, Y) in mini-batches, one optimiser step per batch.

    When ``order`` (a permutation of the rows) is given, the rows are gathered once into a
    contiguous copy in that order, so every batch is a plain slice. ``Y is X`` (an autoencoder)
    is gathered once. Returns the epoch's training loss: the mean over the rows of the batch
    objectives, each taken on the weights before its step (no extra forward pass).
    """
    n = X.shape[0]
    if order is not None:
        targets_are_inputs = Y is X
        X = X.take(order, axis=0)
        Y = X if targets_are_inputs else Y.take(order, axis=0)
    grads = np.empty_like(network.params)
    workspace = Workspace(network, grads, min(batch_size, n))
    total = 0.0
    with _blas_threads(network.layer_units, min(batch_size, n)):
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            total += (stop - start) * loss_and_gradient(
                network,
                grads,
                X[start:stop],
                Y[start:stop],
                activation=activation,
                loss=loss,
                alpha=alpha,
                workspace=workspace,
            )
            optimizer.step(network.params, grads)
    return total / n


def predict_logits(network, X, activation, *, upto=None, start=0, chunk_rows=None):
    """Forward propagation in row chunks (bounded memory): the pre-activation of layer ``upto``
    (default: the output layer) for inputs that enter at layer ``start``; for a hidden layer the
    activation is applied, so ``upto`` < L gives ``A_upto``."""
    # Computed in float64 whatever the working dtype, then rounded to it: float32 BLAS rounds a
    # row differently by its position in the batch (kernel blocking), so float32 outputs would
    # change with the batch's size and order (scikit-learn's invariance checks see it).
    coefs, intercepts = network.unflatten(network.params.astype(np.float64, copy=False))
    upto = network.n_layers if upto is None else upto
    coefs, intercepts = coefs[start:upto], intercepts[start:upto]
    if chunk_rows is None:
        chunk_rows = max(1, (1 << 22) // max(network.layer_units))
    n = X.shape[0]
    out = np.empty((n, network.layer_units[upto]), dtype=network.params.dtype)
    is_hidden = upto < network.n_layers
    for begin in range(0, n, chunk_rows):
        chunk = X[begin : begin + chunk_rows].astype(np.float64, copy=False)
        Z = forward(chunk, coefs, intercepts, activation)[-1]
        out[begin : begin + chunk_rows] = ACTIVATIONS[activation](Z) if is_hidden else Z
    return out
