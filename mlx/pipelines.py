"""The last step of a Pipeline, and the data it sees.

Epoch-by-epoch training, the silhouette score and clustering metrics all work on the final
estimator of a Pipeline and on the data as the steps before it transform it; this module is the
one place that knows how to find them.
"""

from sklearn.pipeline import Pipeline

__all__ = ["final_step", "last_step", "with_last_step"]


def last_step(estimator):
    """The final estimator of a Pipeline; any other estimator itself."""
    return estimator[-1] if isinstance(estimator, Pipeline) else estimator


def final_step(estimator, X, *, fit_y=None, fit=False):
    """The last step of ``estimator`` and ``X`` transformed by the steps before it.

    With ``fit=True`` the steps before the last are fitted on ``(X, fit_y)`` first. For an
    estimator that is not a Pipeline (or a Pipeline of one step): the last step and ``X``
    unchanged.
    """
    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        head = estimator[:-1]
        return estimator[-1], head.fit_transform(X, fit_y) if fit else head.transform(X)
    return last_step(estimator), X


def with_last_step(estimator, last):
    """``estimator`` with its last step replaced by ``last`` (for a non-Pipeline: ``last``)."""
    if isinstance(estimator, Pipeline):
        estimator.steps[-1] = (estimator.steps[-1][0], last)
        return estimator
    return last
