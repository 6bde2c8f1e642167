"""Our numpy estimators against scikit-learn's, on the same data in one run.

Usage: ``python bench/estimators.py [substring ...]`` (only the cases whose name contains one
of the substrings). Prints a Markdown table: fit+predict time of ours and of scikit-learn's
counterpart (median and [min-max] over the repeats), their ratio (below 1.0 means we are
faster), the dtype each side computes in, the threads each may use, the quality of each, and
notes (iteration counts). Both sides get the same arrays; conversions each side makes inside
fit are timed on both. Where ours computes in float32 by default, a row at equal precision
stands beside it. On a machine shared with other work, ratios move between runs (+-0.15 is
common): read the medians, and rerun on a quiet machine before quoting them.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import HEADER, Case, format_row, measure, preamble, thread_counts  # noqa: E402

CASES = {}


def case(fn):
    """Register a function that builds the data and returns one or more :class:`Case`."""
    CASES[fn.__name__] = fn
    return fn


# --- k-means -------------------------------------------------------------------------------


@case
def kmeans():
    """KMeans on 100,000 x 32 points, 8 clusters, one k-means++ start: fit then predict.

    Both draw their start from the same seed, and ours draws as scikit-learn does, so both
    start from the same rows (the notes show each side's n_iter_).

    - blobs: 8 well-separated blobs, found in 2 iterations (the easy case).
    - uniform: points drawn uniformly in the unit cube, no cluster structure; Lloyd's
      algorithm runs about 300 iterations (the hard case of issue 18). It is run again with
      one thread on each side (ours: one assignment thread; scikit-learn: one OpenMP thread
      and one BLAS thread), a comparison that other work on the machine distorts less.

    Quality is -inertia / (sum of squares about the mean): minus the share of the variance
    left, so the delta column reads as a gap in that share. The notes give the relative gap of
    the inertias.
    """
    import numpy as np
    from sklearn.cluster import KMeans as SkKMeans
    from sklearn.datasets import make_blobs
    from threadpoolctl import threadpool_limits

    from mlx.estimators import KMeans
    from mlx.estimators.kmeans import _n_threads

    blobs, _ = make_blobs(n_samples=100_000, n_features=32, centers=8, random_state=0)
    uniform = np.random.RandomState(0).uniform(size=(100_000, 32))
    blas, openmp = thread_counts()
    # scikit-learn pins BLAS to one thread in its Lloyd loop, not in its k-means++.
    default_threads = (f"{_n_threads()} x BLAS 1", f"OpenMP {openmp} (k-means++: BLAS {blas})")

    def fit_predict(model, X, threads=None):
        def run():
            if threads is None:
                model.fit(X).predict(X)
            else:
                with threadpool_limits(limits=threads):
                    model.fit(X).predict(X)
            return model

        return run

    def notes(ours, theirs):
        gap = ours.inertia_ / theirs.inertia_ - 1
        return f"n_iter {ours.n_iter_} / {theirs.n_iter_}; inertia gap {gap:+.1e}"

    cases = []
    for name, X, threads, repeats in [
        ("kmeans blobs 100k x 32, k=8", blobs, None, 7),
        ("kmeans uniform 100k x 32, k=8 (hard)", uniform, None, 5),
        ("kmeans uniform 100k x 32, k=8 (hard), 1 thread each", uniform, 1, 5),
    ]:
        total = float(((X - X.mean(axis=0)) ** 2).sum())
        cases.append(
            Case(
                name=name,
                ours=fit_predict(KMeans(n_clusters=8, n_init=1, random_state=0), X, threads),
                reference=fit_predict(SkKMeans(n_clusters=8, n_init=1, random_state=0), X, threads),
                quality=lambda model, total=total: -model.inertia_ / total,
                quality_name="-inertia / total SS",
                repeats=repeats,
                dtypes=("float64", "float64"),
                threads=default_threads if threads is None else ("1 x BLAS 1", "OpenMP 1, BLAS 1"),
                notes=notes,
            )
        )
    return cases


# --- nearest neighbours --------------------------------------------------------------------


@case
def neighbors():
    """kNN classifier: fit 20,000 x 64, predict 5,000, against scikit-learn's brute and auto."""
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.metrics import accuracy_score
    from sklearn.neighbors import KNeighborsClassifier as SkKNN

    from mlx.estimators import KNeighborsClassifier
    from mlx.estimators.neighbors import _n_threads

    X, y = make_classification(
        n_samples=25_000, n_features=64, n_informative=20, n_classes=5, random_state=0
    )
    blas, openmp = thread_counts()
    threads = (f"{_n_threads(None)} x BLAS 1", f"n_jobs=-1: OpenMP {openmp}, BLAS {blas}")
    X_train, X_test, y_train, y_test = X[:20_000], X[20_000:], y[:20_000], y[20_000:]

    def fit_predict(model, dtype):
        Xtr, Xte = X_train.astype(dtype), X_test.astype(dtype)
        return lambda: model.fit(Xtr, y_train).predict(Xte)

    def quality(pred):
        return accuracy_score(y_test, pred)

    cases = []
    for metric, algorithms in [
        ("euclidean", ["brute", "auto"]),
        ("cosine", ["brute"]),
        ("manhattan", ["brute"]),
    ]:
        for algorithm in algorithms:
            for dtype in (np.float64, np.float32):
                bits = np.dtype(dtype).itemsize * 8
                cases.append(
                    Case(
                        name=f"neighbors {metric} float{bits}",
                        ours=fit_predict(KNeighborsClassifier(metric=metric), dtype),
                        reference=fit_predict(
                            SkKNN(metric=metric, algorithm=algorithm, n_jobs=-1), dtype
                        ),
                        quality=quality,
                        quality_name="accuracy",
                        reference_name=f"scikit-learn {algorithm}",
                        dtypes=(f"float{bits}", f"float{bits}"),
                        threads=threads,
                    )
                )
    return cases


# --- linear regression ---------------------------------------------------------------------


@case
def linear():
    """LinearRegression 200,000 x 100: normal equations against scikit-learn's lstsq, and the
    gradient solvers against SGDRegressor."""
    from sklearn.datasets import make_regression
    from sklearn.linear_model import LinearRegression as SkLinearRegression
    from sklearn.linear_model import SGDRegressor
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlx.estimators import LinearRegression

    X, y = make_regression(
        n_samples=220_000, n_features=100, n_informative=60, noise=10.0, random_state=0
    )
    X += 5.0  # not centred, so that the centring is part of the work
    X_train, X_test, y_train, y_test = X[:200_000], X[200_000:], y[:200_000], y[200_000:]

    def fit_predict(model):
        return lambda: model.fit(X_train, y_train).predict(X_test)

    def quality(pred):
        return r2_score(y_test, pred)

    blas, _ = thread_counts()
    common = dict(dtypes=("float64", "float64"), threads=(f"BLAS {blas}", f"BLAS {blas}"))
    # Our gradient solvers standardise internally; SGDRegressor needs a scaler to do the same.
    sgd_reference = make_pipeline(StandardScaler(), SGDRegressor(random_state=0))
    return [
        Case(
            name="linear normal",
            **common,
            ours=fit_predict(LinearRegression()),
            reference=fit_predict(SkLinearRegression()),
            quality=quality,
            quality_name="R^2",
        ),
        Case(
            name="linear gd (learning_rate=0.5)",
            **common,
            ours=fit_predict(LinearRegression(solver="gd", learning_rate=0.5)),
            reference=fit_predict(sgd_reference),
            quality=quality,
            quality_name="R^2",
            reference_name="scikit-learn scaler + SGDRegressor",
            repeats=3,
        ),
        Case(
            name="linear sgd (defaults)",
            **common,
            ours=fit_predict(LinearRegression(solver="sgd", random_state=0)),
            reference=fit_predict(sgd_reference),
            quality=quality,
            quality_name="R^2",
            reference_name="scikit-learn scaler + SGDRegressor",
            repeats=3,
        ),
    ]


# --- multi-layer perceptrons ---------------------------------------------------------------


@case
def mlp():
    """MLPs against scikit-learn's with the same architecture, epochs, batch size ('auto': 200),
    learning rate and seed. Both run every epoch (tol=0, n_iter_no_change=max_iter).

    Three rows per setting, on the same standardised data:
    - "defaults": float64 data given to both; ours computes in its default float32,
      scikit-learn in float64 (what a user gets without choosing);
    - "float64": ours with dtype=float64, scikit-learn on the same float64 data;
    - "float32": the data in float32 for both; scikit-learn keeps float32.
    Ours runs these small products on one BLAS thread (its rule for products under 2**25
    multiply-adds); scikit-learn on the default BLAS threads.
    """
    import warnings

    import numpy as np
    from sklearn import neural_network
    from sklearn.datasets import load_diabetes, load_digits, make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from mlx.estimators import MLPClassifier, MLPRegressor

    def standardised_split(X, y, stratify):
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.2, stratify=y if stratify else None, random_state=0
        )
        scaler = StandardScaler().fit(X_train)
        return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test

    def fit_predict(model, X_train, X_test, y_train):
        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                return model.fit(X_train, y_train).predict(X_test)

        return run

    blas, _ = thread_counts()
    settings = [
        ("mlp digits (64,) 50 epochs", load_digits(return_X_y=True), True, 50, 1e-3),
        (
            "mlp classification 50k x 40, 4 classes, (64,) 20 epochs",
            make_classification(
                n_samples=50_000, n_features=40, n_informative=20, n_classes=4, random_state=0
            ),
            True,
            20,
            1e-3,
        ),
        (
            "mlp diabetes regressor (64,) 200 epochs",
            load_diabetes(return_X_y=True),
            False,
            200,
            1e-2,
        ),
    ]
    precisions = [
        # (label, data dtype, our dtype, scikit-learn's dtype)
        ("defaults", np.float64, np.float32, "float64"),
        ("float64", np.float64, np.float64, "float64"),
        ("float32", np.float32, np.float32, "float32"),
    ]
    cases = []
    for name, (X, y), is_classification, epochs, learning_rate in settings:
        X_train, X_test, y_train, y_test = standardised_split(X, y, is_classification)
        ours, theirs = (
            (MLPClassifier, neural_network.MLPClassifier)
            if is_classification
            else (MLPRegressor, neural_network.MLPRegressor)
        )
        kwargs = dict(
            hidden_layer_sizes=(64,),
            learning_rate_init=learning_rate,
            max_iter=epochs,
            tol=0.0,
            n_iter_no_change=epochs,
            random_state=0,
        )
        metric = accuracy_score if is_classification else r2_score
        for label, data_dtype, our_dtype, their_dtype in precisions:
            # Cast before timing, for both sides alike.
            Xtr, Xte = X_train.astype(data_dtype), X_test.astype(data_dtype)
            ytr = y_train if is_classification else y_train.astype(data_dtype)
            cases.append(
                Case(
                    name=f"{name}, {label}",
                    ours=fit_predict(ours(dtype=our_dtype, **kwargs), Xtr, Xte, ytr),
                    reference=fit_predict(theirs(**kwargs), Xtr, Xte, ytr),
                    quality=lambda pred, metric=metric, y_test=y_test: metric(y_test, pred),
                    quality_name="accuracy" if is_classification else "R^2",
                    dtypes=(np.dtype(our_dtype).name, their_dtype),
                    threads=("BLAS 1", f"BLAS {blas}"),
                )
            )
    return cases


def main(argv):
    wanted = argv[1:]
    print(preamble("Each row alternates the two sides over its repeats (5-7)."), end="\n\n")
    print(HEADER, flush=True)
    for builder in CASES.values():
        built = builder()
        for c in built if isinstance(built, list) else [built]:
            if not wanted or any(w in c.name for w in wanted):
                print(format_row(measure(c)), flush=True)


if __name__ == "__main__":
    main(sys.argv)
