"""Two moons, six model types: choosing a model, not only its hyperparameters.

The lecture's classifier comparison as one experiment: nearest neighbours, a linear SVM, an RBF
SVM, a decision tree, a random forest and an MLP compete on the same split of the noisy moons.

What it teaches:

- Model selection across model types is one search: each trial first chooses a model (the
  trial's ``model`` parameter), then only that model's hyperparameters. The TPE sampler learns
  which types are worth trials, so the weak ones get few. ``model_budget="fixed"`` instead gives
  every type the same share of the trials, a fairer comparison of the types themselves.
- Training time and memory are constraints too: the leaderboard (``leaderboard.csv`` and
  ``leaderboard.png`` in the parent run) lists each type's best validation accuracy with the
  fit time and pickled size of that model. kNN keeps the whole training set and a forest all of
  its trees; a linear SVM is a handful of numbers.
- ``decision_boundaries.png`` shows why the scores differ: the linear SVM can only draw a line,
  the tree draws axis-aligned boxes, kNN follows the noise when k is small, the RBF SVM and
  the MLP bend smoothly around the moons. Training points are circles, test points triangles.
- Only the MLP learns epoch by epoch, so only its trials have learning curves for the pruner to
  compare; ``n_min_trials=3`` lets the median pruner judge an MLP curve only against at least
  three earlier MLP curves, not against the first one alone.
- With 100 validation points one error is one point of accuracy: types within a few points of
  each other are not told apart by this split, so do not read too much into their order. Only
  the overall winner is refit and evaluated on the test set, once.

Run it with ``mlx run experiments/classifier_comparison.py`` (20-40 s on two cores).
"""

import optuna
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
    name="classifier-comparison",
    data=lambda: make_moons(n_samples=500, noise=0.3, random_state=0),
    estimators={
        "knn": make_pipeline(StandardScaler(), KNeighborsClassifier()),
        "svm_linear": make_pipeline(StandardScaler(), SVC(kernel="linear")),
        "svm_rbf": make_pipeline(StandardScaler(), SVC(kernel="rbf")),
        "tree": DecisionTreeClassifier(),
        # Few trees keep each trial fast; their number is part of the size the leaderboard shows.
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
    model_budget="shared",
    metric="accuracy",
    split=(0.6, 0.2, 0.2),
    pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5, n_min_trials=3),
    seed=0,
    n_trials=40,
)
