"""Multi-layer perceptrons with a scikit-learn face: a classifier, a regressor and an autoencoder.

The numerics (activations, losses, backpropagation, optimisers) live in :mod:`._nn`; this module
validates inputs, encodes targets, runs epochs, stops early and keeps the learning curves.
"""

import warnings
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    RegressorMixin,
    TransformerMixin,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    check_classification_targets,
    type_of_target,
)
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from . import _nn

_DTYPES = {
    "float32": np.float32,
    "float64": np.float64,
    np.float32: np.float32,
    np.float64: np.float64,
}

_PARAMETERS_DOC = """    activation : {'relu', 'leaky_relu', 'tanh', 'sigmoid', 'identity'}, default='relu'
        Activation f of the hidden layers: max(z, 0), max(z, 0.01 z), tanh(z),
        1 / (1 + exp(-z)) or z.

    solver : {'adam', 'sgd'}, default='adam'
        Optimiser: Adam, or stochastic gradient descent with (Nesterov) momentum.

    alpha : float, default=1e-4
        Strength of the L2 penalty ``alpha / (2 n_batch) * ||W||^2`` on the weights (not the
        biases), as in scikit-learn.

    batch_size : int or 'auto', default='auto'
        Rows per mini-batch; 'auto' is ``min(200, n_samples)``. Clipped to ``n_samples``.

    learning_rate_init : float, default=1e-3
        Step size (constant).

    momentum : float, default=0.9
        Momentum of 'sgd'.

    nesterovs_momentum : bool, default=True
        Whether 'sgd' uses Nesterov's momentum.

    beta_1, beta_2 : float, default=0.9, 0.999
        Decay rates of Adam's first and second moment estimates.

    epsilon : float, default=1e-8
        Adam's guard against division by zero.

    max_iter : int, default=200
        Maximum number of epochs (passes over the training data) of :meth:`fit`.

    shuffle : bool, default=True
        Whether to visit the rows in a new random order each epoch.

    tol : float, default=1e-4
        :meth:`fit` stops when the training loss (or, with ``early_stopping``, the validation
        score) has not improved by at least ``tol`` for ``n_iter_no_change`` consecutive epochs.

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified for single-output
        classification), score it after every epoch, stop when it stops improving and keep
        the weights of the best epoch.

    validation_fraction : float, default=0.1
        Fraction of the training data held out when ``early_stopping=True``.

    n_iter_no_change : int, default=10
        Epochs without an improvement of ``tol`` that stop :meth:`fit`.

    dtype : {numpy.float32, numpy.float64, 'float32', 'float64'}, default=numpy.float32
        Floating-point type of the weights and of all computations; float32 is about twice as
        fast, float64 is there for exact comparisons.

    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the shuffling and the validation split.

    verbose : bool, default=False
        Print the loss (and validation score) after every epoch."""

_ATTRIBUTES_DOC = """    loss_ : float
        Training loss of the last epoch.

    loss_curve_ : list of float
        Training loss of every epoch: the mean over the rows of the mini-batch objectives
        (data loss plus L2 penalty), each evaluated on the weights before that batch's step, as
        in scikit-learn. It lags the end-of-epoch weights by up to one epoch of progress.

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

    coefs_ : list of ndarray
        ``coefs_[i]`` is the weight matrix of layer i + 1, of shape (n_units_in, n_units_out).
        The arrays are views of the one flat parameter buffer.

    intercepts_ : list of ndarray
        ``intercepts_[i]`` is the bias vector of layer i + 1.

    n_layers_ : int
        Number of layers, input and output included.

    n_outputs_ : int
        Number of output units.

    out_activation_ : str
        Output function: 'softmax', 'sigmoid' or 'identity'.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during fit, when X has string feature names."""


class _BaseMLP(BaseEstimator):
    """Training machinery shared by the three estimators; subclasses encode the targets."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(_nn.ACTIVATIONS))],
        "solver": [StrOptions({"adam", "sgd"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "dtype": [Options(type, {np.float32, np.float64}), StrOptions({"float32", "float64"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        *,
        activation="relu",
        solver="adam",
        alpha=1e-4,
        batch_size="auto",
        learning_rate_init=1e-3,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        max_iter=200,
        shuffle=True,
        tol=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        dtype=np.float32,
        random_state=None,
        verbose=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # --- hooks for the subclasses -----------------------------------------------------------

    def _validate_training_data(self, X, y, *, reset, classes=None):
        """Return X (validated, in the working dtype) and the target matrix Y (n, n_outputs);
        on ``reset`` also set ``n_outputs_``, ``out_activation_`` and ``_loss``."""
        raise NotImplementedError

    def _hidden_units(self):
        return _check_hidden_layer_sizes(self.hidden_layer_sizes)

    def _validation_score(self, X, Y):
        """Score (higher is better) of the current weights on encoded targets."""
        raise NotImplementedError

    # --- fitted state -----------------------------------------------------------------------

    @property
    def coefs_(self):
        return self._network.coefs

    @property
    def intercepts_(self):
        return self._network.intercepts

    @property
    def n_layers_(self):
        return self._network.n_layers + 1

    def _working_dtype(self):
        return _DTYPES[self.dtype]

    def _initialise(self, n_features):
        """Fresh weights, optimiser and curves (what :meth:`fit` starts from)."""
        self._random_state = check_random_state(self.random_state)
        units = (n_features, *self._hidden_units(), self.n_outputs_)
        dtype = self._working_dtype()
        self._network = _nn.Network(units, dtype).initialise(self.activation, self._random_state)
        n_params = self._network.params.size
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

    def _stratification(self, Y):
        """Labels to stratify the validation split by, or None."""
        return None

    def _validation_split(self, X, Y):
        targets_are_inputs = Y is X  # an autoencoder: split once
        parts = train_test_split(
            *((X,) if targets_are_inputs else (X, Y)),
            test_size=self.validation_fraction,
            random_state=self._random_state,
            stratify=self._stratification(Y),
        )
        X_train, X_val = parts[:2]
        if X_val.shape[0] < 2:
            raise ValueError(
                f"The validation set is too small: validation_fraction={self.validation_fraction} "
                f"of n_samples={X.shape[0]} gives {X_val.shape[0]} row(s). Increase "
                "validation_fraction or use more data."
            )
        Y_train, Y_val = (X_train, X_val) if targets_are_inputs else parts[2:]
        return X_train, X_val, Y_train, Y_val

    def _run_epoch(self, X, Y):
        n = X.shape[0]
        batch_size = min(200, n) if self.batch_size == "auto" else min(self.batch_size, n)
        order = self._random_state.permutation(n) if self.shuffle else None
        # A diverging network overflows to inf / nan; that is reported below with its fix.
        with np.errstate(over="ignore", invalid="ignore"):
            loss = _nn.train_epoch(
                self._network,
                self._optimizer,
                X,
                Y,
                activation=self.activation,
                loss=self._loss,
                alpha=self.alpha,
                batch_size=batch_size,
                order=order,
            )
        self.n_iter_ += 1
        if not np.isfinite(loss):
            raise ValueError(
                f"The training loss became {loss} in epoch {self.n_iter_}: the weights diverged. "
                f"Lower learning_rate_init (now {self.learning_rate_init}) or scale the inputs "
                "(e.g. StandardScaler in a pipeline); for a regressor, scaling the target helps too."
            )
        self.t_ += n
        self.loss_ = loss
        self.loss_curve_.append(loss)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")

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
        return _nn.predict_logits(self._network, X, self.activation)


def _check_hidden_layer_sizes(hidden_layer_sizes):
    sizes = (
        (hidden_layer_sizes,)
        if isinstance(hidden_layer_sizes, Integral)
        else tuple(hidden_layer_sizes)
    )
    if not sizes or not all(isinstance(s, Integral) and int(s) >= 1 for s in sizes):
        raise ValueError(
            "hidden_layer_sizes must be a positive int or a non-empty sequence of positive ints, "
            f"got {hidden_layer_sizes!r}."
        )
    return tuple(int(s) for s in sizes)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = f"""Multi-layer perceptron classifier trained by backpropagation.

    Two classes: one sigmoid output and binary cross-entropy; more classes: a softmax output
    and cross-entropy; a multilabel indicator matrix: one sigmoid output and one binary
    cross-entropy per label.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Units of each hidden layer.

{_PARAMETERS_DOC}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels (for multilabel targets, the label indices 0 .. n_labels - 1).

{_ATTRIBUTES_DOC}

    See Also
    --------
    MLPRegressor : The same network with an identity output and the squared error.
    sklearn.neural_network.MLPClassifier : scikit-learn's counterpart.

    Notes
    -----
    With softmax outputs :math:`\\hat y_{{ik}}` and one-hot targets :math:`y_{{ik}}`, each
    mini-batch of :math:`n` rows minimises

    .. math::
        J = -\\frac{{1}}{{n}} \\sum_i \\sum_k y_{{ik}} \\log \\hat y_{{ik}}
            + \\frac{{\\alpha}}{{2n}} \\sum_l \\lVert W_l \\rVert_F^2

    and the binary cross-entropy replaces the first term for sigmoid outputs. Both are computed
    from the logits (log-sum-exp and softplus), so no probability is ever rounded to 0 before
    its logarithm is taken. Weights start from Glorot-uniform draws (scikit-learn's scheme).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mlx.estimators import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier((16,), learning_rate_init=0.01, max_iter=300, random_state=0)
    >>> clf.fit(X, y).score(X, y) > 0.95
    True
    >>> clf.predict_proba(X[:1]).shape
    (1, 3)
    """

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Train the network from freshly initialised weights for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multilabel indicator matrix.

        Returns
        -------
        self : MLPClassifier
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
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multilabel indicator matrix.
        classes : array-like of shape (n_classes,), default=None
            All the classes that may occur; required on the first call (unless y is a
            multilabel indicator matrix), ignored later.

        Returns
        -------
        self : MLPClassifier
            The updated estimator.
        """
        if not type_of_target(y).startswith("multilabel"):
            _check_partial_fit_first_call(self, classes)
        return self._partial_fit(X, y, classes=classes)

    def _validate_training_data(self, X, y, *, reset, classes=None):
        X, y = validate_data(
            self, X, y, multi_output=True, dtype=self._working_dtype(), reset=reset
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        multilabel = type_of_target(y) == "multilabel-indicator"
        if not reset and multilabel != self._is_multilabel():
            raise ValueError(
                f"y is {'a' if multilabel else 'not a'} multilabel indicator matrix, but the "
                f"network was trained on {'' if self._is_multilabel() else 'no '}such targets."
            )
        if multilabel:
            if reset:
                self.classes_ = np.arange(y.shape[1])
                self._set_output("binary_cross_entropy", y.shape[1])
            elif y.shape[1] != self.n_outputs_:
                raise ValueError(
                    f"y has {y.shape[1]} labels but the network was built for {self.n_outputs_}."
                )
            return X, y.astype(X.dtype)
        check_classification_targets(y)
        if y.ndim != 1:
            raise ValueError(
                "MLPClassifier supports one target of classes or a multilabel indicator matrix, "
                f"got y of type {type_of_target(y)!r} and shape {y.shape}."
            )
        if reset:
            if classes is None or hasattr(self, "_network"):
                self.classes_ = np.unique(y)
            n_classes = len(self.classes_)
            if n_classes < 2:
                raise ValueError(
                    "The classifier needs samples of at least 2 classes in the data, but the "
                    f"data contain only one class: {self.classes_[0]!r}."
                )
            self._set_output(
                "binary_cross_entropy" if n_classes == 2 else "cross_entropy",
                1 if n_classes == 2 else n_classes,
            )
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

    def _set_output(self, loss, n_outputs):
        self._loss = loss
        self.n_outputs_ = n_outputs
        self.out_activation_ = _nn.LOSS_OUTPUT[loss]

    def _stratification(self, Y):
        if self.out_activation_ == "softmax":
            return Y.argmax(axis=1)
        return None if self._is_multilabel() else Y[:, 0]

    def _validation_score(self, X, Y):
        Z = self._logits(X)
        if self.out_activation_ == "softmax":
            return float(np.mean(Z.argmax(axis=1) == Y.argmax(axis=1)))
        return float(np.mean(np.all((Z > 0) == (Y > 0.5), axis=1)))

    def _is_multilabel(self):
        return self.out_activation_ == "sigmoid" and self.n_outputs_ > 1

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """Predict class labels (or a multilabel indicator matrix).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_labels)
            Predicted labels: the most probable class, or every label with probability > 0.5.
        """
        Z = self._logits(self._validate_inputs(X))
        if self._is_multilabel():
            return (Z > 0).astype(int)
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
            Probability of each class in the order of ``classes_`` (for multilabel targets, the
            probability of each label, which need not sum to 1).
        """
        Z = self._logits(self._validate_inputs(X))
        P = _nn.OUTPUT_FUNCTIONS[self.out_activation_](Z)
        if self.n_outputs_ == 1:
            return np.hstack([1 - P, P])
        return P

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
        if self.out_activation_ == "softmax":
            return _nn.log_softmax(Z)
        if self.n_outputs_ == 1:  # log(1 - sigma(z)) = log sigma(-z)
            return np.hstack([_nn.log_sigmoid(-Z), _nn.log_sigmoid(Z)])
        return _nn.log_sigmoid(Z)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = f"""Multi-layer perceptron regressor trained by backpropagation.

    An identity output layer (one unit per target) and the halved mean squared error.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Units of each hidden layer.

{_PARAMETERS_DOC}

    Attributes
    ----------
{_ATTRIBUTES_DOC}

    See Also
    --------
    MLPClassifier : The same network with a sigmoid or softmax output.
    sklearn.neural_network.MLPRegressor : scikit-learn's counterpart.

    Notes
    -----
    Each mini-batch of :math:`n` rows and :math:`k` targets minimises

    .. math::
        J = \\frac{{1}}{{2nk}} \\sum_i \\sum_j (\\hat y_{{ij}} - y_{{ij}})^2
            + \\frac{{\\alpha}}{{2n}} \\sum_l \\lVert W_l \\rVert_F^2 .

    For one target this is scikit-learn's objective; for several, the data term is averaged
    over the targets (scikit-learn sums their gradients). The targets are not scaled: scale
    them (``TransformedTargetRegressor``) when they are far from unit size.
    Predictions are returned in float64.

    Examples
    --------
    >>> import numpy as np
    >>> from mlx.estimators import MLPRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, size=(500, 2))
    >>> y = np.sin(3 * X[:, 0]) + X[:, 1] ** 2
    >>> reg = MLPRegressor((32,), learning_rate_init=0.01, max_iter=300, random_state=0)
    >>> reg.fit(X, y).score(X, y) > 0.95
    True
    """

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Train the network from freshly initialised weights for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.

        Returns
        -------
        self : MLPRegressor
            The fitted estimator.
        """
        return self._fit(X, y)

    def partial_fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Run exactly one epoch over (X, y), continuing from the current weights.

        The first call initialises the network as :meth:`fit` does; later calls continue the
        weights, the optimiser state and the random stream, so ``k`` calls on the same data
        reproduce ``fit`` with ``max_iter=k``. The caller decides when to stop.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.

        Returns
        -------
        self : MLPRegressor
            The updated estimator.
        """
        return self._partial_fit(X, y)

    def _validate_training_data(self, X, y, *, reset, classes=None):
        X, y = validate_data(
            self,
            X,
            y,
            multi_output=True,
            y_numeric=True,
            dtype=self._working_dtype(),
            reset=reset,
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
            Predictions (1-D when the network has one output).
        """
        Z = self._logits(self._validate_inputs(X)).astype(np.float64)
        return Z[:, 0] if self.n_outputs_ == 1 else Z

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class MLPAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _BaseMLP):
    __doc__ = f"""Autoencoder: a multi-layer perceptron trained to reproduce its input.

    The encoder has the hidden layers ``hidden_layer_sizes``; the decoder mirrors them back to
    ``n_features`` identity outputs, so ``(64, 16)`` builds
    ``n_features -> 64 -> 16 -> 64 -> n_features``. Training minimises the (halved) mean
    squared reconstruction error. :meth:`transform` returns the bottleneck activations (the
    last encoder layer), :meth:`inverse_transform` decodes them, :meth:`score` is the negative
    mean squared reconstruction error.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(64, 16)
        Units of the encoder's hidden layers; the last one is the embedding (bottleneck).

{_PARAMETERS_DOC}

    Attributes
    ----------
{_ATTRIBUTES_DOC}

    See Also
    --------
    sklearn.decomposition.PCA : The best linear autoencoder (an identity-activation network
        with one bottleneck layer can at best match it).

    Notes
    -----
    Each mini-batch of :math:`n` rows and :math:`d` features minimises

    .. math::
        J = \\frac{{1}}{{2nd}} \\sum_i \\lVert \\mathrm{{dec}}(\\mathrm{{enc}}(x_i)) - x_i
            \\rVert^2 + \\frac{{\\alpha}}{{2n}} \\sum_l \\lVert W_l \\rVert_F^2 ,

    so ``loss_curve_`` is about half the mean squared error that :meth:`score` negates. The
    activation applies to every hidden layer, the bottleneck included.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from mlx.estimators import MLPAutoencoder
    >>> X = StandardScaler().fit_transform(load_digits().data)
    >>> ae = MLPAutoencoder((32, 8), activation="tanh", max_iter=20, random_state=0).fit(X)
    >>> ae.transform(X).shape
    (1797, 8)
    >>> ae.inverse_transform(ae.transform(X)).shape
    (1797, 64)
    """

    def __init__(
        self,
        hidden_layer_sizes=(64, 16),
        *,
        activation="relu",
        solver="adam",
        alpha=1e-4,
        batch_size="auto",
        learning_rate_init=1e-3,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        max_iter=200,
        shuffle=True,
        tol=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        dtype=np.float32,
        random_state=None,
        verbose=False,
    ):
        super().__init__(
            hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate_init=learning_rate_init,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            max_iter=max_iter,
            shuffle=shuffle,
            tol=tol,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            dtype=dtype,
            random_state=random_state,
            verbose=verbose,
        )

    def fit(self, X: ArrayLike, y: object = None) -> Self:
        """Train the autoencoder from freshly initialised weights for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data (also the targets).
        y : None
            Ignored.

        Returns
        -------
        self : MLPAutoencoder
            The fitted estimator.
        """
        return self._fit(X, y)

    def partial_fit(self, X: ArrayLike, y: object = None) -> Self:
        """Run exactly one epoch over X, continuing from the current weights.

        The first call initialises the network as :meth:`fit` does; later calls continue the
        weights, the optimiser state and the random stream, so ``k`` calls on the same data
        reproduce ``fit`` with ``max_iter=k``. The caller decides when to stop.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data (also the targets).
        y : None
            Ignored.

        Returns
        -------
        self : MLPAutoencoder
            The updated estimator.
        """
        return self._partial_fit(X, y)

    def _hidden_units(self):
        encoder = _check_hidden_layer_sizes(self.hidden_layer_sizes)
        return (*encoder, *encoder[-2::-1])

    @property
    def _bottleneck(self):
        """Index of the embedding layer among the network's layers (the input is layer 0)."""
        return len(_check_hidden_layer_sizes(self.hidden_layer_sizes))

    @property
    def _n_features_out(self):
        return self._network.layer_units[self._bottleneck]

    def _validate_training_data(self, X, y, *, reset, classes=None):
        X = validate_data(self, X, dtype=self._working_dtype(), reset=reset)
        if reset:
            self._loss = "squared_error"
            self.n_outputs_ = X.shape[1]
            self.out_activation_ = "identity"
        return X, X

    def _validation_score(self, X, Y):
        return -float(np.mean((self._logits(X) - Y) ** 2))

    def transform(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Encode X: the activations of the bottleneck layer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        embedding : ndarray of shape (n_samples, hidden_layer_sizes[-1])
            The embedding, in the working dtype.
        """
        X = self._validate_inputs(X)
        return _nn.predict_logits(self._network, X, self.activation, upto=self._bottleneck)

    def inverse_transform(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Decode embeddings back to the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, hidden_layer_sizes[-1])
            Embeddings, as returned by :meth:`transform`.

        Returns
        -------
        reconstruction : ndarray of shape (n_samples, n_features_in_)
            The decoder's output.
        """
        check_is_fitted(self)
        E = check_array(X, dtype=self._network.params.dtype)
        if E.shape[1] != self._n_features_out:
            raise ValueError(
                f"X has {E.shape[1]} columns, but the embedding of this autoencoder has "
                f"{self._n_features_out}."
            )
        return _nn.predict_logits(self._network, E, self.activation, start=self._bottleneck)

    def score(self, X: ArrayLike, y: object = None) -> float:
        """Negative mean squared reconstruction error (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.
        y : None
            Ignored.

        Returns
        -------
        score : float
            ``-mean((reconstruction - X) ** 2)`` over all entries.
        """
        X = self._validate_inputs(X)
        return self._validation_score(X, X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = [np.dtype(_DTYPES.get(self.dtype, np.float64)).name]
        return tags
