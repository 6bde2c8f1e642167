"""The training base of the deep estimators (convolutional and recurrent nets on frames).

An estimator is ``Face + Base + architecture``::

    class CNNClassifier(DeepClassifierMixin, _BaseCNN)      # _BaseCNN(_BaseDeepNet)

- :class:`_BaseDeepNet` holds the parameters every deep net shares (named like the MLP's where
  they mean the same thing), runs the epochs (``fit``: fresh weights, early stopping on a
  stratified held-out split with the best weights restored; ``partial_fit``: exactly one epoch),
  adds the L2 penalty, clips the global gradient norm, steps ``_nn.Adam`` / ``_nn.SGD`` and keeps
  the curves.
- :class:`DeepClassifierMixin` / :class:`DeepRegressorMixin` encode the targets and give
  ``fit``, ``partial_fit``, ``predict`` (and ``predict_proba`` / ``predict_log_proba``): a
  sigmoid output for two classes, a softmax for more, an identity output for regression.
- The architecture class declares its own parameters (``__init__`` lists them *and* the base's,
  keyword-only, and calls ``super().__init__(**base)``; ``_parameter_constraints =
  {**_BaseDeepNet._parameter_constraints, ...}``) and implements one hook::

      _build_network(self, input_shape, n_outputs, dtype) -> network

  which checks the architecture against ``input_shape`` (raising a ``ValueError`` that names
  the block and the lengths) and returns an uninitialised network.

The network protocol
--------------------
A network is a :class:`FlatNetwork` subclass (or anything with the same attributes):

``params``, ``grads``
    1-D arrays of the same size: every parameter, and dJ/dparams. The L2-penalised weights come
    first, ``params[:n_weights]``; named views ``p[name]`` / ``g[name]`` show them as arrays.
``initialise(rng)``
    Draws the parameters from a NumPy ``RandomState`` (float64 draws, so one seed gives the same
    network in float32 and float64); returns the network.
``forward(X, training=False, rng=None) -> Z``
    ``X`` has shape ``(n, *input_shape)`` (PyTorch's layout: ``(n, channels, steps)``); returns
    the logits ``Z`` of shape ``(n, n_outputs)``. With ``training=True`` it caches what
    ``backward`` needs and draws its dropout masks from ``rng`` (a NumPy ``Generator``). ``Z``
    may be a buffer the network reuses: the caller overwrites it (the loss writes dL/dZ into it).
``backward(dZ)``
    Fills ``grads`` with the gradient of the data loss (the base adds the L2 term) from
    ``dZ = dL/dZ`` of the last training ``forward``.
pickling
    Only ``config`` (the constructor's keyword arguments) and ``params`` are pickled; caches and
    per-batch buffers are rebuilt on use.

Input layout: rows stay 2-D for scikit-learn. ``input_shape=(channels, steps)`` says that a row is
the C-order flattening of a ``(channels, steps)`` array, so ``X.reshape(n, channels, steps)``
is PyTorch's ``(batch, channels, time)`` layout; this is what ``mlx.audio.LogMelSpectrogram``
outputs with ``channels = n_mels`` and ``steps = n_frames`` (all frames of band 0, then band 1,
...). Without ``input_shape`` a row of ``n_features`` columns is one channel of ``n_features``
steps, ``(1, n_features)``.

The layers every deep net shares (an affine :class:`Dense` layer and inverted :class:`Dropout`)
live here too; convolution and pooling are in :mod:`._conv`.
"""

import contextlib
import math
import warnings
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    check_classification_targets,
)
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from . import _nn
from .mlp import _DTYPES

# Rows per forward pass at prediction time: bounds the memory of predict / score.
PREDICT_ROWS = 256

BASE_PARAMETERS_DOC = """    solver : {'adam', 'sgd'}, default='adam'
        Optimiser: Adam, or stochastic gradient descent with (Nesterov) momentum.

    learning_rate_init : float, default=1e-3
        Step size (constant).

    alpha : float, default=1e-4
        Strength of the L2 penalty ``alpha / (2 n_batch) * ||W||^2`` on the weights (not the
        biases), as in the MLP.

    batch_size : int, default=64
        Rows per mini-batch (clipped to ``n_samples``). The memory of a training step is
        proportional to it, not to the size of the data set.

    max_iter : int, default=200
        Maximum number of epochs (passes over the training data) of :meth:`fit`.

    shuffle : bool, default=True
        Whether to visit the rows in a new random order each epoch.

    tol : float, default=1e-4
        :meth:`fit` stops when the training loss (or, with ``early_stopping``, the validation
        score) has not improved by at least ``tol`` for ``n_iter_no_change`` consecutive epochs.

    n_iter_no_change : int, default=10
        Epochs without an improvement of ``tol`` that stop :meth:`fit`.

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified for classification),
        score it after every epoch, stop when it stops improving and keep the weights of the
        best epoch.

    validation_fraction : float, default=0.1
        Fraction of the training data held out when ``early_stopping=True``.

    momentum : float, default=0.9
        Momentum of 'sgd'.

    nesterovs_momentum : bool, default=True
        Whether 'sgd' uses Nesterov's momentum.

    beta_1, beta_2 : float, default=0.9, 0.999
        Decay rates of Adam's first and second moment estimates.

    epsilon : float, default=1e-8
        Adam's guard against division by zero.

    clip_norm : float or None, default=None
        When set, every mini-batch gradient g (all parameters as one vector) is rescaled to
        ``g * clip_norm / ||g||`` when ``||g|| > clip_norm``. None turns clipping off.

    input_shape : tuple of int or None, default=None
        ``(channels, steps)``: a row of X is the C-order flattening of an array of this shape
        (as ``mlx.audio.LogMelSpectrogram`` outputs with ``(n_mels, n_frames)``). None reads a
        row of ``n_features`` columns as one channel of ``n_features`` steps.

    dtype : {numpy.float32, numpy.float64, 'float32', 'float64'}, default=numpy.float32
        Floating-point type of the weights and of all computations; float64 is there for
        exact comparisons.

    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the shuffling, the dropout masks and the validation split.

    verbose : bool, default=False
        Print the loss (and validation score) after every epoch."""

BASE_ATTRIBUTES_DOC = """    loss_ : float
        Training loss of the last epoch.

    loss_curve_ : list of float
        Training loss of every epoch: the mean over the rows of the mini-batch objectives
        (data loss plus L2 penalty), each evaluated on the weights before that batch's step.

    best_loss_ : float or None
        Smallest entry of ``loss_curve_``; None when ``early_stopping=True``.

    validation_scores_ : list of float or None
        Validation score after every epoch when ``early_stopping=True``, else None.

    best_validation_score_ : float or None
        Best entry of ``validation_scores_``.

    n_iter_ : int
        Number of epochs run (by :meth:`fit` and any later :meth:`partial_fit` calls).

    t_ : int
        Number of training rows seen.

    input_shape_ : tuple of int
        ``(channels, steps)`` of a row, from ``input_shape`` or ``(1, n_features_in_)``.

    n_outputs_ : int
        Number of output units.

    out_activation_ : str
        Output function: 'softmax', 'sigmoid' or 'identity'.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during fit, when X has string feature names."""


# --- the network protocol's base ------------------------------------------------------------


class FlatNetwork:
    """Named parameter arrays as views of one flat buffer, with a gradient buffer of the same
    layout.

    Parameters
    ----------
    layout : sequence of (name, shape, penalised)
        The parameter arrays. The penalised ones (weights) are placed first, in the given order,
        then the others (biases), so that the L2 term touches ``params[:n_weights]``.
    dtype : numpy floating dtype

    Subclasses set ``self.config`` (the keyword arguments that rebuild them: pickling keeps
    ``config`` and ``params`` only) and implement ``initialise``, ``forward`` and ``backward``.
    """

    config: dict[str, Any]

    def __init__(self, layout, dtype):
        ordered = [e for e in layout if e[2]] + [e for e in layout if not e[2]]
        self.n_weights = sum(math.prod(shape) for _, shape, penalised in ordered if penalised)
        size = sum(math.prod(shape) for _, shape, _ in ordered)
        self.params = np.zeros(size, dtype=dtype)
        self.grads = np.zeros(size, dtype=dtype)
        self.p, self.g = {}, {}
        start = 0
        for name, shape, _ in ordered:
            stop = start + math.prod(shape)
            self.p[name] = self.params[start:stop].reshape(shape)
            self.g[name] = self.grads[start:stop].reshape(shape)
            start = stop

    def __getstate__(self):
        # What rebuilds the network: the rest is the last batch's scratch (buffers, caches),
        # many times the parameters' size, which a pickle or a skops file of a model leaves out.
        return {"config": self.config, "params": self.params}

    def __setstate__(self, state):
        self.__dict__.update(vars(_rebuild_network(type(self), state["config"], state["params"])))

    def initialise(self, rng):
        raise NotImplementedError

    def forward(self, X, training=False, rng=None):
        raise NotImplementedError

    def backward(self, dZ):
        raise NotImplementedError


def _rebuild_network(cls, config, params):
    network = cls(**config)
    network.params[...] = params
    return network


class Buffers:
    """Arrays reused from batch to batch: ``get(name, shape, dtype)`` returns a view of the first
    elements of a buffer kept under ``name``, grown when too small. A smaller last batch gets a
    prefix of the same memory, so an epoch allocates each buffer once."""

    def __init__(self):
        self._arrays = {}

    def get(self, name, shape, dtype):
        size = math.prod(shape)
        array = self._arrays.get(name)
        if array is None or array.size < size or array.dtype != dtype:
            array = self._arrays[name] = np.empty(size, dtype=dtype)
        return array[:size].reshape(shape)

    def zeros(self, name, shape, dtype):
        out = self.get(name, shape, dtype)
        out.fill(0)
        return out


# --- layers every deep net shares -----------------------------------------------------------


class Dense:
    """Affine layer ``Z = A W + b`` on rows ``A`` (n, fan_in), W (fan_in, fan_out), b (fan_out,).

    Backward, from ``dZ = dL/dZ``::

        dW = A^T dZ,   db = 1^T dZ,   dA = dZ W^T
    """

    def __init__(self):
        self.buffers = Buffers()

    def forward(self, A, W, b):
        self.A = A
        Z = np.matmul(A, W, out=self.buffers.get("Z", (A.shape[0], W.shape[1]), A.dtype))
        Z += b
        return Z

    def backward(self, dZ, W, dW, db, *, input_grad=True):
        np.matmul(self.A.T, dZ, out=dW)
        np.sum(dZ, axis=0, out=db)
        if not input_grad:
            return None
        return np.matmul(dZ, W.T, out=self.buffers.get("dA", self.A.shape, dZ.dtype))


class Dropout:
    """Inverted dropout: in training, ``Y = X * M / q`` with ``M_i ~ Bernoulli(q)``, the keep
    probability ``q = 1 - rate``, so that E[Y] = X and inference is the identity.

    Backward: ``dX = dY * M / q`` (the same scaled mask).
    """

    def __init__(self, rate):
        self.rate = float(rate)
        self.buffers = Buffers()
        self.mask = None

    def forward(self, X, training=False, rng=None):
        if not training or self.rate == 0:
            self.mask = None
            return X
        q = 1.0 - self.rate
        mask = self.buffers.get("mask", X.shape, X.dtype)
        rng.random(dtype=mask.dtype, out=mask)
        # M / q in place: 1/q where the uniform draw is below q, else 0
        np.less(mask, q, out=mask, casting="unsafe")
        mask *= 1.0 / q
        self.mask = mask
        return np.multiply(X, mask, out=self.buffers.get("Y", X.shape, X.dtype))

    def backward(self, dY):
        if self.mask is None:
            return dY
        dY *= self.mask
        return dY


# --- the objective --------------------------------------------------------------------------


def loss_and_gradient(network, X, Y, *, loss, alpha, rng=None):
    """The mini-batch objective of a training step; its gradient is written into
    ``network.grads``.

    J = L(Y, g(Z)) + alpha / (2 n) ||W||^2 over the weights ``params[:n_weights]`` (not the
    biases), the penalty scaled by the batch size as in the MLP. ``X`` is (n, *input_shape),
    ``Y`` (n, n_outputs), ``loss`` a key of ``_nn.LOSSES``, ``rng`` the dropout masks' Generator.
    """
    n = X.shape[0]
    Z = network.forward(X, training=True, rng=rng)
    J = _nn.LOSSES[loss](Z, Y)  # Z now holds dL/dZ
    network.backward(Z)
    if alpha:
        w = network.params[: network.n_weights]
        J += 0.5 * alpha * float(np.vdot(w, w)) / n
        network.grads[: network.n_weights] += (alpha / n) * w
    return J


# --- the estimators' base -------------------------------------------------------------------


def _check_input_shape(input_shape, n_features):
    """``(channels, steps)`` of a row: from ``input_shape`` (a 1- or 2-tuple of positive ints,
    ``(steps,)`` meaning one channel) or, when it is None, ``(1, n_features)``."""
    if input_shape is None:
        return (1, n_features)
    shape = tuple(input_shape)
    if not 1 <= len(shape) <= 2 or not all(isinstance(s, Integral) and int(s) >= 1 for s in shape):
        raise ValueError(
            "input_shape must be None, (steps,) or (channels, steps) of positive ints, got "
            f"{input_shape!r}."
        )
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        shape = (1, *shape)
    if math.prod(shape) != n_features:
        raise ValueError(
            f"input_shape={tuple(input_shape)} implies rows of {math.prod(shape)} features, but "
            f"X has {n_features} features. Pass the (channels, steps) of one row, e.g. "
            "(n_mels, n_frames) of the LogMelSpectrogram before this estimator."
        )
    return shape


class _BaseDeepNet(BaseEstimator):
    """Training machinery shared by the deep estimators (see the module docstring)."""

    _parameter_constraints: dict = {
        "solver": [StrOptions({"adam", "sgd"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "clip_norm": [None, Interval(Real, 0, None, closed="neither")],
        "input_shape": [None, "array-like"],
        "dtype": [Options(type, {np.float32, np.float64}), StrOptions({"float32", "float64"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
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
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.alpha = alpha
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.clip_norm = clip_norm
        self.input_shape = input_shape
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # --- hooks ------------------------------------------------------------------------------

    def _build_network(self, input_shape, n_outputs, dtype):
        """An uninitialised network (see the module docstring) for rows of ``input_shape``."""
        raise NotImplementedError

    def _validate_training_data(self, X, y, *, reset, classes=None):
        """X (validated, working dtype) and the target matrix Y (n, n_outputs); on ``reset``
        also ``n_outputs_``, ``out_activation_`` and ``_loss`` (the faces implement it)."""
        raise NotImplementedError

    def _validation_score(self, X, Y):
        """Score (higher is better) of the current weights on encoded targets."""
        raise NotImplementedError

    def _stratification(self, Y):
        """Labels to stratify the validation split by, or None."""
        return None

    def _blas_threads(self):
        """Context of a training epoch's BLAS calls: the default thread count."""
        return contextlib.nullcontext()

    # --- set-up -----------------------------------------------------------------------------

    def _working_dtype(self):
        return _DTYPES[self.dtype]

    def _initialise(self, n_features):
        """Fresh network, optimiser and curves (what :meth:`fit` starts from)."""
        self._random_state = check_random_state(self.random_state)
        self.input_shape_ = _check_input_shape(self.input_shape, n_features)
        dtype = self._working_dtype()
        network = self._build_network(self.input_shape_, self.n_outputs_, dtype)
        self._network = network.initialise(self._random_state)
        n_params = network.params.size
        if self.solver == "adam":
            self._optimizer: _nn.Adam | _nn.SGD = _nn.Adam(
                n_params,
                dtype,
                learning_rate=self.learning_rate_init,
                beta_1=self.beta_1,
                beta_2=self.beta_2,
                epsilon=self.epsilon,
            )
        else:
            self._optimizer = _nn.SGD(
                n_params,
                dtype,
                learning_rate=self.learning_rate_init,
                momentum=self.momentum,
                nesterov=self.nesterovs_momentum,
            )
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        # Early stopping tracks the validation score, otherwise the training loss: the other is
        # None.
        self.validation_scores_: list[float] | None
        self.best_validation_score_: float | None
        self.best_loss_: float | None
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    # --- training ---------------------------------------------------------------------------

    def _fit(self, X, y):
        self._validate_params()
        X, Y = self._validate_training_data(X, y, reset=True)
        self._initialise(X.shape[1])
        X_val = Y_val = None
        if self.early_stopping:
            X, X_val, Y, Y_val = self._validation_split(X, Y)
        for _ in range(self.max_iter):
            self._run_epoch(X, Y)
            if self._has_stopped_improving(X_val, Y_val):
                break
        else:
            warnings.warn(
                f"{type(self).__name__}: the maximum number of epochs (max_iter={self.max_iter}) "
                "was reached and the optimisation hasn't converged yet: raise max_iter, or "
                "learning_rate_init if the loss curve is still falling steadily.",
                ConvergenceWarning,
                stacklevel=3,
            )
        if self.early_stopping:
            self._network.params[...] = self._best_params
            del self._best_params
        return self

    def _partial_fit(self, X, y, classes=None):
        first_call = not hasattr(self, "_network")
        if first_call:
            self._validate_params()
        if self.early_stopping:
            raise ValueError(
                "partial_fit does not support early_stopping=True: it runs exactly one epoch on "
                "the data it is given, so the caller scores its own validation data between "
                "calls. Set early_stopping=False."
            )
        X, Y = self._validate_training_data(X, y, reset=first_call, classes=classes)
        if first_call:
            self._initialise(X.shape[1])
        self._run_epoch(X, Y)
        self._has_stopped_improving(None, None)
        return self

    def _validation_split(self, X, Y):
        n_val = math.ceil(self.validation_fraction * X.shape[0])  # train_test_split's rounding
        if n_val < 2:
            raise ValueError(
                f"The validation set is too small: validation_fraction={self.validation_fraction} "
                f"of n_samples={X.shape[0]} gives {n_val} row(s). Increase validation_fraction "
                "or use more data."
            )
        X_train, X_val, Y_train, Y_val = train_test_split(
            X,
            Y,
            test_size=self.validation_fraction,
            random_state=self._random_state,
            stratify=self._stratification(Y),
        )
        return X_train, X_val, Y_train, Y_val

    def _run_epoch(self, X, Y):
        """One pass in mini-batches, one optimiser step per batch. Each batch is gathered into
        a reused buffer, so the memory of an epoch is that of a batch (no shuffled copy of the
        data)."""
        n = X.shape[0]
        batch_size = min(self.batch_size, n)
        order = self._random_state.permutation(n) if self.shuffle else None
        # The dropout masks come from a Generator (float32 draws) seeded from the one stream.
        rng = np.random.default_rng(self._random_state.randint(np.iinfo(np.int32).max))
        network, optimizer = self._network, self._optimizer
        params, grads = network.params, network.grads
        batches = Buffers()
        total = 0.0
        # A diverging network overflows to inf / nan; that is reported below with its fix.
        with np.errstate(over="ignore", invalid="ignore"), self._blas_threads():
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                m = stop - start
                if order is None:
                    X_batch, Y_batch = X[start:stop], Y[start:stop]
                else:
                    rows = order[start:stop]
                    X_batch = np.take(
                        X, rows, axis=0, out=batches.get("X", (m, X.shape[1]), X.dtype)
                    )
                    Y_batch = np.take(
                        Y, rows, axis=0, out=batches.get("Y", (m, Y.shape[1]), Y.dtype)
                    )
                X_batch = X_batch.reshape(m, *self.input_shape_)
                J = loss_and_gradient(
                    network, X_batch, Y_batch, loss=self._loss, alpha=self.alpha, rng=rng
                )
                if self.clip_norm is not None:
                    norm = math.sqrt(float(np.vdot(grads, grads)))
                    if norm > self.clip_norm:
                        grads *= self.clip_norm / norm
                optimizer.step(params, grads)
                total += m * J
        loss_value = total / n
        self.n_iter_ += 1
        if not np.isfinite(loss_value):
            raise ValueError(
                f"The training loss became {loss_value} in epoch {self.n_iter_}: the weights "
                f"diverged. Lower learning_rate_init (now {self.learning_rate_init}), set "
                "clip_norm, or scale the inputs (e.g. StandardScaler in a pipeline); for a "
                "regressor, scaling the target helps too."
            )
        self.t_ += n
        self.loss_ = loss_value
        self.loss_curve_.append(loss_value)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {loss_value:.8f}")

    def _has_stopped_improving(self, X_val, Y_val):
        """Update the no-improvement count (scikit-learn's rule) and say whether to stop."""
        if X_val is not None:
            score = self._validation_score(X_val, Y_val)
            # Validation rows exist only with early_stopping, which set these up.
            assert self.validation_scores_ is not None and self.best_validation_score_ is not None
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:.8f}")
            improved = score >= self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self._network.params.copy()
        else:
            improved = self.loss_ <= self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, self.loss_)
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        return self._no_improvement_count > self.n_iter_no_change

    # --- inference --------------------------------------------------------------------------

    def _validate_inputs(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=self._network.params.dtype)

    def _logits(self, X):
        """The logits of validated rows, computed in chunks of PREDICT_ROWS rows.

        The forward pass runs in float64 whatever the working dtype, and the logits are rounded
        to it: float32 BLAS rounds a row differently by its position in the batch (kernel
        blocking), so float32 outputs would change with the batch's size and order.
        """
        network = self._network
        if network.params.dtype != np.float64:
            network = _rebuild_network(
                type(network), {**network.config, "dtype": np.float64}, network.params
            )
        n = X.shape[0]
        Z = np.empty((n, self.n_outputs_), dtype=self._network.params.dtype)
        for start in range(0, n, PREDICT_ROWS):
            chunk = X[start : start + PREDICT_ROWS].astype(np.float64, copy=False)
            Z[start : start + PREDICT_ROWS] = network.forward(
                chunk.reshape(chunk.shape[0], *self.input_shape_)
            )
        return Z


# --- the faces ------------------------------------------------------------------------------


class DeepClassifierMixin(ClassifierMixin):
    """Classification face: one sigmoid output and the binary cross-entropy for two classes, a
    softmax and the cross-entropy for more."""

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Train the network from freshly initialised weights for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, each row the flattening of an ``input_shape`` array.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y)

    def partial_fit(self, X: ArrayLike, y: ArrayLike, classes: ArrayLike | None = None) -> Self:
        """Run exactly one epoch over (X, y), continuing from the current weights.

        The first call initialises the network as :meth:`fit` does; later calls continue the
        weights, the optimiser state and the random stream, so ``k`` calls on the same data
        reproduce ``fit`` with ``max_iter=k``. The caller decides when to stop.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels.
        classes : array-like of shape (n_classes,), default=None
            All the classes that may occur; required on the first call, ignored later.

        Returns
        -------
        self : object
            The updated estimator.
        """
        _check_partial_fit_first_call(self, classes)
        return self._partial_fit(X, y, classes=classes)

    def _validate_training_data(self, X, y, *, reset, classes=None):
        X, y = validate_data(self, X, y, dtype=self._working_dtype(), reset=reset)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if reset:
            if classes is None or hasattr(self, "_network"):
                self.classes_ = np.unique(y)
            n_classes = len(self.classes_)
            if n_classes < 2:
                raise ValueError(
                    "The classifier needs samples of at least 2 classes in the data, but the "
                    f"data contain only one class: {self.classes_.tolist()[0]!r}."
                )
            self._loss = "binary_cross_entropy" if n_classes == 2 else "cross_entropy"
            self.n_outputs_ = 1 if n_classes == 2 else n_classes
            self.out_activation_ = _nn.LOSS_OUTPUT[self._loss]
        index = np.searchsorted(self.classes_, y)
        index[index == len(self.classes_)] = 0
        unknown = self.classes_[index] != y
        if unknown.any():
            raise ValueError(
                f"y contains labels not in classes_={self.classes_.tolist()}: "
                f"{np.unique(y[unknown]).tolist()}."
            )
        if self.n_outputs_ == 1:
            return X, index.astype(X.dtype).reshape(-1, 1)
        Y = np.zeros((len(y), self.n_outputs_), dtype=X.dtype)
        Y[np.arange(len(y)), index] = 1
        return X, Y

    def _stratification(self, Y):
        return Y.argmax(axis=1) if self.n_outputs_ > 1 else Y[:, 0]

    def _validation_score(self, X, Y):
        Z = self._logits(X)
        if self.n_outputs_ > 1:
            return float(np.mean(Z.argmax(axis=1) == Y.argmax(axis=1)))
        return float(np.mean((Z[:, 0] > 0) == (Y[:, 0] > 0.5)))

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            The most probable class of each sample.
        """
        Z = self._logits(self._validate_inputs(X))
        if self.n_outputs_ == 1:
            return self.classes_[(Z[:, 0] > 0).astype(int)]
        return self.classes_[Z.argmax(axis=1)]

    def predict_proba(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probability of each class in the order of ``classes_``.
        """
        Z = self._logits(self._validate_inputs(X))
        P = _nn.OUTPUT_FUNCTIONS[self.out_activation_](Z)
        return np.hstack([1 - P, P]) if self.n_outputs_ == 1 else P

    def predict_log_proba(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Logarithm of the class probabilities, computed from the logits without underflow.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            ``log(predict_proba(X))``, finite even where the probability rounds to 0.
        """
        Z = self._logits(self._validate_inputs(X))
        if self.n_outputs_ == 1:  # log(1 - sigma(z)) = log sigma(-z)
            return np.hstack([_nn.log_sigmoid(-Z), _nn.log_sigmoid(Z)])
        return _nn.log_softmax(Z)


class DeepRegressorMixin(RegressorMixin):
    """Regression face: identity outputs (one per target) and the halved mean squared error."""

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Train the network from freshly initialised weights for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, each row the flattening of an ``input_shape`` array.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y)

    def partial_fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Run exactly one epoch over (X, y), continuing from the current weights.

        The first call initialises the network as :meth:`fit` does; later calls continue the
        weights, the optimiser state and the random stream, so ``k`` calls on the same data
        reproduce ``fit`` with ``max_iter=k``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._partial_fit(X, y)

    def _validate_training_data(self, X, y, *, reset, classes=None):
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=self._working_dtype(), reset=reset
        )
        Y = y.reshape(len(y), -1).astype(X.dtype, copy=False)
        if reset:
            self._loss = "squared_error"
            self.n_outputs_ = Y.shape[1]
            self.out_activation_ = "identity"
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {Y.shape[1]} targets but the network was built for {self.n_outputs_}."
            )
        return X, Y

    def _validation_score(self, X, Y):
        return float(r2_score(Y, self._logits(X)))

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """Predict the targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictions in float64 (1-D when the network has one output).
        """
        Z = self._logits(self._validate_inputs(X)).astype(np.float64)
        return Z[:, 0] if self.n_outputs_ == 1 else Z

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
