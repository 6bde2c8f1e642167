"""Diabetes with linear regression: normal equations against gradient descent, and L2.

One search over the solver, the L2 penalty ``alpha`` and, for the gradient solvers only, the
learning rate. The closed form ("normal") gets the least-squares optimum in one solve; full-batch
("gd") and mini-batch ("sgd") gradient descent reach the same optimum only with a learning rate
that suits them and enough iterations, which the search has to find out.

What it teaches:

- A define-by-run search space: a function of the Optuna trial that suggests
  ``learning_rate`` only when the solver uses it, so the normal-equation trials are not spread
  over a parameter that does nothing.
- Gradient solvers learn with ``partial_fit``, one iteration at a time: the runner trains them
  epoch by epoch (up to ``max_iter``), logs the validation R^2 per epoch and lets the median
  pruner stop the runs that lag behind.
- L2 on 10 features and 442 patients: the test R^2 is about 0.45 whatever the solver, and the
  test R^2 of a small split varies by +-0.1 from split to split, hence the large test split.

Run it with ``mlx run experiments/diabetes_linear.py`` (about 20 s on two cores).
"""

from sklearn.datasets import load_diabetes
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlx
from mlx.estimators import LinearRegression


def linear_space(trial):
    solver = trial.suggest_categorical("solver", ["normal", "gd", "sgd"])
    params = {
        "linearregression__solver": solver,
        "linearregression__alpha": trial.suggest_float("alpha", 1e-5, 1.0, log=True),
    }
    if solver != "normal":
        params["linearregression__learning_rate"] = trial.suggest_float(
            "learning_rate", 1e-3, 0.3, log=True
        )
    return params


experiment = mlx.Experiment(
    name="diabetes-linear",
    data=lambda: load_diabetes(return_X_y=True),
    estimator=make_pipeline(StandardScaler(), LinearRegression(max_iter=100)),
    search_space=linear_space,
    metric="r2",
    split=(0.4, 0.2, 0.4),
    refit="train+val",
    # The split seed decides which 177 patients are the test set, and with them the test R^2:
    # over seeds 0-11 this experiment scores 0.38-0.55, median 0.46. Seed 0 draws the hardest
    # test set of those (0.38), seed 2 a typical one (0.46).
    seed=2,
    n_trials=30,
)
