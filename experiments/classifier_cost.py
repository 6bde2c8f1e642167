"""Two moons, six model types, and a model that must fit in 8 KiB: accuracy against cost.

The classifier comparison again, with a hard limit on the model's size, as on a device with
little memory: ``max_model_bytes=8192`` (the pickled fitted model, preprocessing included).

What it teaches:

- Model complexity is a constraint of model selection, not an afterthought. kNN keeps its whole
  training set (about 12 KiB here) and a random forest all of its trees (about 100 KiB), so
  neither may win however accurate it is; an RBF SVM keeps only its support vectors, a tree its
  splits, a small MLP its weights.
- The limit is part of the search, not a filter afterwards: every trial tells Optuna how far it
  is over the limit (``trial.set_constraint``), and TPE samples away from the models and
  settings that break it, so most trials go where the answer can be.
- One rule picks the tested model: the most accurate trial within the limit (ties: the smaller
  model, then the earlier trial). The test split is evaluated once, on that model only.
- ``search/cost.png`` and ``search/cost.csv`` in the parent run show the price of the limit:
  every trial's validation accuracy against its size, within the limit or over it, the Pareto
  front (no other trial both more accurate and smaller) and the chosen trial. The distance
  between the front's best point and the chosen one is what the 8 KiB cost in accuracy on this
  validation split (a few points at most on these 100 rows; one error is one point).
- ``max_fit_seconds=`` limits the time of one fit in the same way (timings vary with the
  machine's load, so a time limit is less repeatable than a size limit).

It uses a seed of its own, so its test split differs from ``classifier_comparison.py``'s and
both run in one folder. Run it with ``mlx run experiments/classifier_cost.py`` (30-60 s on two
cores).
"""

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from sklearn.datasets import make_moons
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

import mlx
from mlx.estimators import KNeighborsClassifier, MLPClassifier


def mlp_space(trial):
    # Hidden layers from suggested integers: Optuna's storage keeps no tuples as choices.
    width = trial.suggest_int("width", 4, 64, log=True)
    return {
        "mlpclassifier__hidden_layer_sizes": (width,) * trial.suggest_int("depth", 1, 2),
        "mlpclassifier__learning_rate_init": trial.suggest_float(
            "learning_rate_init", 1e-3, 1e-1, log=True
        ),
        "mlpclassifier__alpha": trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
    }


experiment = mlx.Experiment(
    name="classifier-cost",
    data=lambda: make_moons(n_samples=500, noise=0.3, random_state=0),
    estimators={
        "knn": make_pipeline(StandardScaler(), KNeighborsClassifier()),
        "svm_linear": make_pipeline(StandardScaler(), SVC(kernel="linear")),
        "svm_rbf": make_pipeline(StandardScaler(), SVC(kernel="rbf")),
        "tree": DecisionTreeClassifier(),
        "forest": RandomForestClassifier(n_estimators=30),
        "mlp": make_pipeline(StandardScaler(), MLPClassifier(max_iter=40, batch_size=32)),
    },
    search_space={
        "knn": {
            "kneighborsclassifier__n_neighbors": IntDistribution(1, 60, log=True),
            "kneighborsclassifier__weights": CategoricalDistribution(["uniform", "distance"]),
        },
        "svm_linear": {"svc__C": FloatDistribution(1e-3, 1e2, log=True)},
        "svm_rbf": {
            "svc__C": FloatDistribution(1e-2, 1e3, log=True),
            "svc__gamma": FloatDistribution(1e-3, 1e2, log=True),
        },
        "tree": {
            "max_depth": IntDistribution(1, 12),
            "min_samples_leaf": IntDistribution(1, 20),
        },
        "forest": {
            "max_depth": IntDistribution(2, 12),
            "min_samples_leaf": IntDistribution(1, 10),
        },
        "mlp": mlp_space,
    },
    max_model_bytes=8192,
    metric="accuracy",
    split=(0.6, 0.2, 0.2),
    seed=4,  # not classifier_comparison.py's 0: another test split of the same data
    n_trials=40,
)
