"""A small CPU-bound experiment for the scale-out tests (tests/test_scale_out.py).

An MLP on digits, trained epoch by epoch for a fixed number of epochs (no pruning, so every
trial does the same work): about a second per trial on one core (the fit and, per epoch, the
scores and a report to the study), long enough for several processes to share the trials and
for a test to catch a trial while it runs.
"""

import optuna
from optuna.distributions import FloatDistribution
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlx
from mlx.estimators import MLPClassifier

experiment = mlx.Experiment(
    name="scale-out-digits",
    data=lambda: load_digits(return_X_y=True),
    estimator=make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(256,), max_iter=15)
    ),
    search_space={
        "mlpclassifier__learning_rate_init": FloatDistribution(1e-3, 3e-2, log=True),
        "mlpclassifier__alpha": FloatDistribution(1e-6, 1e-2, log=True),
    },
    metric="accuracy",
    split=(0.7, 0.15, 0.15),
    seed=0,
    n_trials=8,
    pruner=optuna.pruners.NopPruner(),
)
