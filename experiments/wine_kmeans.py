"""Wine with k-means: choosing the number of clusters without labels, then checking against them.

Clustering has no labels to search on, so the search maximises the silhouette of the validation
split: how much closer each point lies to its own cluster than to the next one. The true
cultivars are used only at the end: the runner logs the adjusted Rand index (ARI) of the test
clusters against them, the check a clustering cannot make for itself.

What it teaches:

- ``metric="silhouette"`` with ``task`` inferred as clustering, and ``n_clusters`` as the search
  space: the silhouette peaks at the three cultivars.
- Silhouettes compare only within one feature space: the runner scores them after the
  Pipeline's preprocessing (here standardised, then projected on 2 principal components, where
  the three groups stand out), so that space must not be part of the search.
- A small data set needs large validation and test splits: the silhouette of a handful of
  points picks k by chance. The chosen k is refit on train + validation.

Run it with ``mlx run experiments/wine_kmeans.py`` (a few seconds on two cores).
"""

from optuna.distributions import IntDistribution
from sklearn.datasets import load_wine
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlx
from mlx.estimators import KMeans

experiment = mlx.Experiment(
    name="wine-kmeans",
    # The labels (cultivars) are never seen by the search; the runner compares the test
    # clusters with them (test_adjusted_rand, test_normalized_mutual_info).
    data=lambda: load_wine(return_X_y=True),
    estimator=make_pipeline(StandardScaler(), PCA(n_components=2), KMeans(n_init=10)),
    search_space={"kmeans__n_clusters": IntDistribution(2, 8)},
    metric="silhouette",
    split=(0.4, 0.3, 0.3),
    refit="train+val",
    seed=0,
    n_trials=12,
)
