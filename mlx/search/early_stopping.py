"""Early stopping under the runner: patience on the runner's own validation curve.

An estimator asks for early stopping with ``early_stopping=True``; on its own it would hold out
part of its training data. Under the runner it is trained epoch by epoch through
``partial_fit``, which cannot hold anything out, and the runner already scores every epoch on
its validation split. So the runner turns the estimator's own early stopping off while it trains
and applies the estimator's patience itself (``n_iter_no_change`` epochs without an improvement
of ``tol``, counted as scikit-learn's MLP counts them), keeps the best epoch's model, and refits
the best configuration for as many epochs as its trial needed.
"""

import contextlib
import copy

__all__ = ["BEST_EPOCH", "EarlyStopping", "own_early_stopping_off"]

# The trial's user attribute that holds the number of epochs its best model trained.
BEST_EPOCH = "mlx.best_epoch"
# scikit-learn's defaults, for estimators that ask for early stopping without saying how.
_PATIENCE, _TOL = 10, 1e-4


class EarlyStopping:
    """Patience on a validation curve; keeps the best epoch's model.

    Parameters
    ----------
    patience : int
        Epochs without an improvement of at least ``tol`` after which training stops.
    tol : float
        The smallest change of the score that counts as an improvement.
    """

    def __init__(self, patience=_PATIENCE, tol=_TOL):
        self.patience = patience
        self.tol = tol
        self.best_score = float("-inf")
        self.best_epoch = None
        self.best_model = None
        self._no_improvement = 0

    @classmethod
    def of(cls, estimator):
        """The runner's early stopping for ``estimator`` (a last step), or None if it wants none."""
        params = estimator.get_params(deep=False)
        if params.get("early_stopping") is not True:
            return None
        patience = params.get("n_iter_no_change")
        tol = params.get("tol")
        return cls(
            patience=_PATIENCE if patience is None else int(patience),
            tol=_TOL if tol is None else float(tol),
        )

    def update(self, epoch, score, model):
        """Record epoch ``epoch`` (0-based) and its validation ``score``; True to stop now."""
        improved = score >= self.best_score + self.tol
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.best_model = copy.deepcopy(model)
        self._no_improvement = 0 if improved else self._no_improvement + 1
        return self._no_improvement > self.patience


@contextlib.contextmanager
def own_early_stopping_off(estimator):
    """Within the block, ``estimator``'s own early stopping is off (restored afterwards).

    ``partial_fit`` refuses ``early_stopping=True`` (scikit-learn's MLPs, mlx's networks): the
    caller scores its own validation data between epochs.
    """
    wanted = estimator.get_params(deep=False).get("early_stopping")
    if wanted is not True:
        yield
        return
    estimator.set_params(early_stopping=False)
    try:
        yield
    finally:
        estimator.set_params(early_stopping=wanted)
