"""Digits with a multi-layer perceptron: depth, width, activation, learning rate and L2.

What it teaches:

- Building structured parameters from suggested numbers: the hidden layers are
  ``(width,) * depth`` from two suggested integers. (A tuple as a categorical choice would come
  back from a persistent Optuna storage as a list, with a warning.)
- Pruning on the learning curve: the MLP learns with ``partial_fit``, so the runner trains it
  one epoch at a time, reports the validation accuracy after each epoch, and the median pruner
  stops a trial whose curve lags behind the earlier trials' at the same epoch. Pruned trials
  show in MLflow with the part of the curve they reached.
- The learning rate and the L2 penalty ``alpha`` live on log scales.

Run it with ``mlx run experiments/digits_mlp.py`` (about 30 s on two cores).
"""

import optuna
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlx
from mlx.estimators import MLPClassifier


def mlp_space(trial):
    depth = trial.suggest_int("depth", 1, 3)
    width = trial.suggest_int("width", 32, 256, log=True)
    return {
        "mlpclassifier__hidden_layer_sizes": (width,) * depth,
        "mlpclassifier__activation": trial.suggest_categorical(
            "activation", ["relu", "tanh", "leaky_relu"]
        ),
        "mlpclassifier__learning_rate_init": trial.suggest_float(
            "learning_rate_init", 1e-4, 3e-2, log=True
        ),
        "mlpclassifier__alpha": trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
    }


experiment = mlx.Experiment(
    name="digits-mlp",
    data=lambda: load_digits(return_X_y=True),
    # max_iter is the epoch budget of each trial.
    estimator=make_pipeline(StandardScaler(), MLPClassifier(max_iter=40)),
    search_space=mlp_space,
    metric="accuracy",
    split=(0.8, 0.1, 0.1),
    seed=0,
    n_trials=30,
    # Compare curves only after a few epochs: every curve starts low.
    pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5),
)
