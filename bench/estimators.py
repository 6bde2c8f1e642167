"""Our numpy estimators against scikit-learn's, on the same data in one run.

Usage: ``python bench/estimators.py [substring ...]`` (only the cases whose name contains one
of the substrings). Prints a Markdown table: median fit+predict time of ours and of
scikit-learn's counterpart, their ratio (below 1.0 means we are faster) and the quality of each.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import HEADER, Case, format_row, measure  # noqa: E402

CASES = {}


def case(fn):
    """Register a function that builds the data and returns one or more :class:`Case`."""
    CASES[fn.__name__] = fn
    return fn


# --- k-means -------------------------------------------------------------------------------


@case
def kmeans():
    """KMeans 100,000 x 32 blobs, 8 clusters, one k-means++ start: fit then predict.

    Quality is -inertia / (inertia around the true blob centres): about -1 when the blobs are
    found, so the delta column reads as a relative inertia gap.
    """
    from sklearn.cluster import KMeans as SkKMeans
    from sklearn.datasets import make_blobs

    from mlx.estimators import KMeans

    X, y, centres = make_blobs(
        n_samples=100_000, n_features=32, centers=8, random_state=0, return_centers=True
    )
    true_inertia = float(((X - centres[y]) ** 2).sum())

    def fit_predict(model):
        def run():
            model.fit(X).predict(X)
            return model.inertia_

        return run

    return Case(
        name="kmeans 100k x 32, k=8",
        ours=fit_predict(KMeans(n_clusters=8, n_init=1, random_state=0)),
        reference=fit_predict(SkKMeans(n_clusters=8, n_init=1, random_state=0)),
        quality=lambda inertia: -inertia / true_inertia,
        quality_name="-inertia / true-centre inertia",
        repeats=7,
    )


# --- nearest neighbours --------------------------------------------------------------------


# --- linear regression ---------------------------------------------------------------------


# --- multi-layer perceptrons ---------------------------------------------------------------


def main(argv):
    wanted = argv[1:]
    print(HEADER, flush=True)
    for builder in CASES.values():
        built = builder()
        for c in built if isinstance(built, list) else [built]:
            if not wanted or any(w in c.name for w in wanted):
                print(format_row(measure(c)), flush=True)


if __name__ == "__main__":
    main(sys.argv)
