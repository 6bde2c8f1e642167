"""Linear least squares with an L2 penalty: closed form, or (mini-batch) gradient descent.

Every solver minimises the same objective (see :class:`LinearRegression`), so they agree up to
the gradient solvers' tolerance.
"""

import warnings
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

# Rows centred at a time when accumulating X^T X: bounds the extra memory to this many rows.
_GRAM_CHUNK_ROWS = 4096
# Past this condition number (estimated from the Cholesky factor of the unit-diagonal Gram) the
# normal equations would lose more than ~1e-6 of the coefficients: solve by lstsq on X instead.
_MAX_GRAM_CONDITION = 1e8
# A descent method never climbs this far above its starting loss unless its steps diverge.
_DIVERGENCE_FACTOR = 100.0


def _column_means(X, Y, fit_intercept):
    if not fit_intercept:
        return np.zeros(X.shape[1]), np.zeros(Y.shape[1])
    return X.mean(axis=0, dtype=np.float64), Y.mean(axis=0, dtype=np.float64)


def _centred_gram(X, Y, x_mean, y_mean):
    """``Xc^T Xc`` and ``Xc^T Yc`` of the centred data, in float64, centring one chunk at a time."""
    n, d = X.shape
    gram = np.zeros((d, d))
    cross = np.zeros((d, Y.shape[1]))
    buffer = np.empty((min(n, _GRAM_CHUNK_ROWS), d))
    for start in range(0, n, _GRAM_CHUNK_ROWS):
        stop = min(start + _GRAM_CHUNK_ROWS, n)
        chunk = buffer[: stop - start]
        np.subtract(X[start:stop], x_mean, out=chunk)
        gram += chunk.T @ chunk
        cross += chunk.T @ (Y[start:stop] - y_mean)
    return gram, cross


def _solve_normal(X, Y, alpha, fit_intercept):
    """Coefficients (d, t) and intercepts (t,) of the ridge objective, by Cholesky or lstsq."""
    n, d = X.shape
    x_mean, y_mean = _column_means(X, Y, fit_intercept)
    gram, cross = _centred_gram(X, Y, x_mean, y_mean)
    gram[np.diag_indices(d)] += n * alpha
    W = np.zeros((d, Y.shape[1]))
    # Columns with no variance (and no penalty) carry no information: coefficient 0, which is
    # also the minimum-norm least-squares answer.
    active = np.flatnonzero(np.diag(gram) > 0)
    if active.size:
        W[active] = _solve_spd(gram[np.ix_(active, active)], cross[active])
        if not np.isfinite(W).all():
            W = _solve_lstsq(X, Y, x_mean, y_mean, alpha)
    return W, y_mean - x_mean @ W


def _solve_spd(A, B):
    """Solve ``A W = B`` for a symmetric positive definite ``A``; None if it is ill-conditioned."""
    # Unit diagonal first, so that the Cholesky diagonal measures conditioning, not units.
    scale = 1.0 / np.sqrt(np.diag(A))
    try:
        factor = scipy.linalg.cholesky(A * np.outer(scale, scale), lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return np.full_like(B, np.nan)
    pivots = np.diag(factor)
    if (pivots.max() / pivots.min()) ** 2 > _MAX_GRAM_CONDITION:
        return np.full_like(B, np.nan)
    Z = scipy.linalg.cho_solve((factor, True), B * scale[:, None], check_finite=False)
    return Z * scale[:, None]


def _solve_lstsq(X, Y, x_mean, y_mean, alpha):
    """Minimum-norm least squares on the centred data (rank-deficient or ill-conditioned X)."""
    n, d = X.shape
    A = np.asarray(X, dtype=np.float64) - x_mean
    B = np.asarray(Y, dtype=np.float64) - y_mean
    if alpha > 0:
        # Ridge as least squares on rows appended below: sqrt(n alpha) I against zeros.
        A = np.vstack([A, np.sqrt(n * alpha) * np.eye(d)])
        B = np.vstack([B, np.zeros((d, B.shape[1]))])
    W, *_ = scipy.linalg.lstsq(A, B, check_finite=False)
    return W


class LinearRegression(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Linear least squares with an optional L2 penalty, solved in closed form or by descent.

    Parameters
    ----------
    solver : {"normal", "gd", "sgd"}, default="normal"
        "normal": closed form (Cholesky on the centred Gram matrix; minimum-norm least squares
        when it is singular or ill-conditioned). "gd": full-batch gradient descent, one step
        per iteration. "sgd": mini-batch stochastic gradient descent, one shuffled pass over
        the data per iteration.
    alpha : float, default=0.0
        L2 penalty on the coefficients (never on the intercept); see Notes for its scale.
    learning_rate : float, default=0.01
        Step size of the gradient solvers, in the standardised coordinates of Notes.
    batch_size : int or "auto", default="auto"
        Mini-batch size of "sgd"; "auto" is ``min(200, n_samples)``.
    max_iter : int, default=1000
        Most iterations (epochs) of the gradient solvers.
    tol : float, default=1e-6
        Stopping tolerance of the gradient solvers, on the standardised problem: "gd" stops once
        no gradient component exceeds ``tol``; "sgd" once the loss after an epoch has improved by
        less than a fraction ``tol`` of its best value for ``n_iter_no_change`` epochs in a
        row.
    n_iter_no_change : int, default=5
        Patience of "sgd" (see ``tol``).
    learning_rate_schedule : {"constant", "adaptive"}, default="constant"
        "sgd" only. "constant": the lecture's loop, one step size throughout; it stops where the
        mini-batch noise stops the loss from improving, which is near the optimum by a distance
        that grows with ``learning_rate``. "adaptive": each time the patience runs out the step
        size is divided by 5, and training stops once it falls below ``1e-6``; this reaches the
        optimum as closely as "gd" does, at the price of more epochs.
    fit_intercept : bool, default=True
        Whether to fit an intercept; if False the data are taken as centred.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling of "sgd". The other solvers are deterministic.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Coefficients; two-dimensional when ``y`` was two-dimensional (as scikit-learn).
    intercept_ : float or ndarray of shape (n_targets,)
        Intercepts; the float 0.0 when ``fit_intercept=False`` (as scikit-learn).
    loss_curve_ : list of float
        Gradient solvers: the objective of Notes on the training data at each iteration, in
        the units of ``y`` ("gd": before the step; "sgd": after the epoch).
    n_iter_ : int
        Iterations run by the gradient solvers (1 for "normal": one direct solve).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    sklearn.linear_model.Ridge : The same penalised objective with ``alpha_ridge = n * alpha``.

    Notes
    -----
    All solvers minimise, for each target,

    .. math::

        L(w, b) = \\frac{1}{2n} \\lVert y - X w - b \\rVert^2 + \\frac{\\alpha}{2} \\lVert w \\rVert^2

    (summed over targets). Its minimiser is scikit-learn's ``Ridge(alpha=n_samples * alpha)``;
    ``alpha=0`` is ordinary least squares.

    The closed form accumulates :math:`X_c^T X_c` over chunks of centred rows (extra memory
    O(chunk x n_features), never a centred copy of X) and solves
    :math:`(X_c^T X_c + n\\alpha I) w = X_c^T y_c` by Cholesky; the intercept follows from the
    means.

    The gradient solvers work internally on standardised coordinates: feature *j* is centred
    and divided by :math:`\\sqrt{\\mathrm{var}_j + \\alpha}` and each target is centred and
    divided by its standard deviation. This is a change of variables, not of the problem (the
    coefficients are mapped back), which makes the diagonal of the Hessian 1: one learning rate
    suits every feature scale, and ``tol`` means the same on any data. The statistics come from
    the data of ``fit`` or of the first ``partial_fit`` call. Coefficients start at 0.

    Examples
    --------
    >>> import numpy as np
    >>> from mlx.estimators import LinearRegression
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 1.0]])
    >>> y = X @ [2.0, -1.0] + 0.5
    >>> reg = LinearRegression().fit(X, y)
    >>> reg.coef_.round(6), round(reg.intercept_, 6)
    (array([ 2., -1.]), 0.5)
    >>> gd = LinearRegression(solver="gd", learning_rate=0.5).fit(X, y)
    >>> np.allclose(gd.coef_, reg.coef_, rtol=1e-4)
    True
    >>> reg.predict([[1.0, 1.0]]).round(6)
    array([1.5])
    """

    _parameter_constraints = {
        "solver": [StrOptions({"normal", "gd", "sgd"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_schedule": [StrOptions({"constant", "adaptive"})],
        "fit_intercept": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        solver="normal",
        alpha=0.0,
        learning_rate=0.01,
        batch_size="auto",
        max_iter=1000,
        tol=1e-6,
        n_iter_no_change=5,
        learning_rate_schedule="constant",
        fit_intercept=True,
        random_state=None,
    ):
        self.solver = solver
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.learning_rate_schedule = learning_rate_schedule
        self.fit_intercept = fit_intercept
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Fit the coefficients (from scratch: a previous fit is forgotten).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.

        Returns
        -------
        self : LinearRegression
            The fitted estimator.
        """
        X, Y = self._validate_X_y(X, y, reset=True)
        if self.solver == "normal":
            W, b = _solve_normal(X, Y, self.alpha, self.fit_intercept)
            # No descent state survives a closed-form fit for partial_fit to continue from.
            self.__dict__.pop("_W", None)
            self.loss_curve_: list[float] = []
            self.n_iter_ = 1
            self._set_public(W, b, X.dtype)
            return self
        self._start_descent(X, Y)
        for _ in range(self.max_iter):
            if self._converged(self._epoch(X, Y)):
                break
        else:
            warnings.warn(
                f"LinearRegression(solver={self.solver!r}) reached max_iter={self.max_iter} "
                f"before converging (tol={self.tol}); raise max_iter or learning_rate "
                f"(now {self.learning_rate}).",
                ConvergenceWarning,
                stacklevel=3,  # past the _fit_context wrapper, to the caller
            )
        return self

    def _check_solver(self):
        if self.solver == "normal":
            raise AttributeError(
                "partial_fit is only available for the gradient solvers 'gd' and 'sgd', not "
                f"for solver={self.solver!r}."
            )
        return True

    @available_if(_check_solver)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Run one iteration of the gradient solver on the given data.

        The first call on an unfitted estimator sets the standardisation statistics from its
        data; later calls (and calls after ``fit``) continue from the current coefficients: one
        step of "gd", one epoch of "sgd". The number of features and targets must not change.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.

        Returns
        -------
        self : LinearRegression
            The updated estimator.
        """
        first = not hasattr(self, "_W")
        X, Y = self._validate_X_y(X, y, reset=first)
        if first:
            self._start_descent(X, Y)
        elif Y.shape[1] != self._W.shape[1]:
            raise ValueError(
                f"y has {Y.shape[1]} targets, but partial_fit started with {self._W.shape[1]}."
            )
        self._epoch(X, Y)
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Predict ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictions, shaped like the ``y`` given to fit.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return X @ self.coef_.T + self.intercept_

    # --- internals ------------------------------------------------------------------------

    def _validate_X_y(self, X, y, reset) -> tuple[NDArray[Any], NDArray[Any]]:
        X, y = validate_data(
            self,
            X,
            y,
            reset=reset,
            dtype=[np.float64, np.float32],
            y_numeric=True,
            multi_output=True,
        )
        if reset:
            self._y_1d = y.ndim == 1
            self._dtype = X.dtype
        if self.solver != "normal":
            # Once here, not at every product of every step (numpy would upcast float32 there).
            X = np.asarray(X, dtype=np.float64)
        return X, np.asarray(y, dtype=np.float64).reshape(y.shape[0], -1)

    def _set_public(self, W, b, dtype):
        """Publish coefficients (d, t) and intercepts (t,) in scikit-learn's shapes."""
        coef = W.T.astype(dtype)
        self.coef_ = coef[0] if self._y_1d else coef
        if not self.fit_intercept:
            self.intercept_ = 0.0
        else:
            self.intercept_ = float(b[0]) if self._y_1d else b.astype(dtype)

    def _start_descent(self, X, Y):
        """Standardisation statistics, zero coefficients, fresh history and random stream."""
        x_mean, y_mean = _column_means(X, Y, self.fit_intercept)
        if self.fit_intercept:
            x_var = X.var(axis=0, dtype=np.float64)
        else:
            # Without an intercept the data are taken as centred: the second moment plays var.
            x_var = np.einsum("ij,ij->j", X, X, dtype=np.float64) / X.shape[0]
        x_scale = np.sqrt(x_var + self.alpha)
        x_scale[x_scale == 0] = 1
        y_var = ((Y - y_mean) ** 2).mean(axis=0)
        y_scale = np.sqrt(y_var)
        y_scale[y_scale == 0] = 1
        if not (np.isfinite(x_scale).all() and np.isfinite(y_scale).all()):
            # Squares of values beyond ~1e154 overflow float64: the descent would return NaN.
            raise ValueError(
                f"LinearRegression(solver={self.solver!r}) cannot standardise the data: the "
                f"variance of X or y overflows float64 (largest |X| = {np.abs(X).max():.3g}, "
                f"largest |y| = {np.abs(Y).max():.3g}). Rescale X (StandardScaler) and y, or "
                f"use solver='normal'."
            )
        self._x_mean, self._x_scale = x_mean, x_scale
        self._y_mean, self._y_scale = y_mean, y_scale
        self._W = np.zeros((X.shape[1], Y.shape[1]))
        self._b = np.zeros(Y.shape[1])
        self._rng = check_random_state(self.random_state)
        self._learning_rate = self.learning_rate
        self._loss_start = None
        self.loss_curve_ = []
        self.n_iter_ = 0
        self._no_improvement = 0
        self._best_loss = np.inf

    def _batch_gradient(self, X, T, with_gradient=True):
        """Standardised loss per target and gradients on one batch (T: standardised targets).

        The standardisation is folded into the parameters, so X is never copied:
        ``z W = (x - mean) / scale @ W = x @ V - mean @ V`` with ``V = W / scale``.
        """
        V = self._W / self._x_scale[:, None]
        residual = X @ V + (self._b - self._x_mean @ V) - T
        m = X.shape[0]
        penalty = self.alpha * self._W / self._x_scale[:, None] ** 2
        loss = 0.5 * np.einsum("ij,ij->j", residual, residual) / m
        loss += 0.5 * np.einsum("ij,ij->j", penalty, self._W)
        if not with_gradient:
            return loss
        grad_W = (X.T @ residual - np.outer(self._x_mean, residual.sum(axis=0))) / (
            m * self._x_scale[:, None]
        ) + penalty
        grad_b = residual.mean(axis=0) if self.fit_intercept else np.zeros_like(self._b)
        return loss, grad_W, grad_b

    def _epoch(self, X, Y):
        """One iteration of the solver; returns its convergence measure.

        "gd": the largest gradient component before the step; "sgd": the loss after the epoch.
        Both in standardised units.
        """
        T = (Y - self._y_mean) / self._y_scale
        if self.solver == "gd":
            loss, grad_W, grad_b = self._batch_gradient(X, T)
            self._check_loss(loss)
            measure = max(np.abs(grad_W).max(initial=0), np.abs(grad_b).max())
            if measure > self.tol:
                self._W -= self._learning_rate * grad_W
                self._b -= self._learning_rate * grad_b
        else:
            n = X.shape[0]
            batch = min(200, n) if self.batch_size == "auto" else min(self.batch_size, n)
            order = self._rng.permutation(n)
            for start in range(0, n, batch):
                rows = order[start : start + batch]
                _, grad_W, grad_b = self._batch_gradient(X[rows], T[rows])
                self._W -= self._learning_rate * grad_W
                self._b -= self._learning_rate * grad_b
            # On all the data, after the epoch: the mean of the mini-batch losses seen during
            # the epoch would be cheaper but too noisy to decide convergence on.
            loss = self._batch_gradient(X, T, with_gradient=False)
            self._check_loss(loss)
            measure = loss.sum()
        self.loss_curve_.append(float((loss * self._y_scale**2).sum()))
        self.n_iter_ += 1
        coef = self._W * (self._y_scale / self._x_scale[:, None])
        self._set_public(
            coef, self._y_mean + self._y_scale * self._b - self._x_mean @ coef, self._dtype
        )
        return measure

    def _converged(self, measure):
        """The stopping rule of ``fit`` (see ``tol``), given what :meth:`_epoch` returned."""
        if self.solver == "gd":
            return measure <= self.tol
        # Relative: a well-fitted target has a tiny standardised loss.
        improved = measure < self._best_loss * (1 - self.tol)
        self._best_loss = min(self._best_loss, measure)
        self._no_improvement = 0 if improved else self._no_improvement + 1
        if self._no_improvement < self.n_iter_no_change:
            return False
        if self.learning_rate_schedule == "constant":
            return True
        self._learning_rate /= 5
        self._no_improvement = 0
        return self._learning_rate < 1e-6

    def _check_loss(self, loss):
        total = loss.sum()
        if self._loss_start is None:
            self._loss_start = max(total, 1.0)
        if not np.isfinite(total) or total > _DIVERGENCE_FACTOR * self._loss_start:
            raise ValueError(
                f"LinearRegression(solver={self.solver!r}) diverged at iteration "
                f"{self.n_iter_ + 1}: the loss reached {total:.3g} (standardised units) with "
                f"learning_rate={self.learning_rate}. Use a lower learning_rate."
            )
