"""An experiment file whose trials sleep a known time, and stall on demand, for process tests.

Trials sleep inside the search-space function, so their length is known without loading the
machine, and a signal reliably lands in the middle of one: with ``MLX_TEST_STALL_FROM=N`` in
the environment, trials from number N on sleep ten minutes.
"""

import textwrap

EXPERIMENT = """
import os
import time

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import mlx
{prelude}

def space(trial):
    # A test that must stop the search mid-trial makes trials from this number on stall.
    stall = trial.number >= int(os.environ.get("MLX_TEST_STALL_FROM", 10**9))
    time.sleep(600 if stall else {sleep})
    return {{"C": trial.suggest_float("C", 1e-2, 1e2, log=True)}}


experiment = mlx.Experiment(
    name="{name}",
    data=lambda: load_iris(return_X_y=True),
    estimator=LogisticRegression(max_iter=200),
    search_space=space,
    metric="accuracy",
    seed={seed},
    n_trials={n_trials},
)
"""


def write_experiment(folder, name="reliable", sleep=0.4, n_trials=8, seed=0, prelude=""):
    """Write the experiment file ``<name>.py`` into ``folder``; ``prelude`` runs before it."""
    path = folder / f"{name}.py"
    source = EXPERIMENT.format(
        name=name, sleep=sleep, n_trials=n_trials, seed=seed, prelude=textwrap.dedent(prelude)
    )
    path.write_text(textwrap.dedent(source))
    return path
