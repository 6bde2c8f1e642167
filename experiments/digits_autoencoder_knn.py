"""Digits through an autoencoder's embedding, classified by nearest neighbours, in one Pipeline.

An :class:`~mlx.estimators.MLPAutoencoder` learns, without the labels, to squeeze each 64-pixel
digit through a narrow bottleneck and rebuild it; the bottleneck activations are a short
embedding in which k-nearest neighbours then classify. Both stages are tuned together, on the
accuracy of the whole Pipeline on the validation split.

What it teaches:

- Unsupervised representation learning as a Pipeline step: the autoencoder is a transformer,
  so ``StandardScaler -> MLPAutoencoder -> KNeighborsClassifier`` fits, searches, logs and
  serves as one model.
- Searching across steps: the embedding size (``mlpautoencoder__hidden_layer_sizes``, built
  from suggested integers) and the number of neighbours interact; a define-by-run space
  returns parameters of both steps.
- The Pipeline's last step (kNN) has no ``partial_fit``, so each trial is one ``fit``: pruning
  needs an epoch-by-epoch final step (see ``digits_mlp.py``).

Run it with ``mlx run experiments/digits_autoencoder_knn.py`` (about 15 s on two cores).
"""

from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlx
from mlx.estimators import KNeighborsClassifier, MLPAutoencoder


def embedding_space(trial):
    width = trial.suggest_int("width", 32, 128, log=True)
    embedding = trial.suggest_int("embedding", 4, 32, log=True)
    return {
        "mlpautoencoder__hidden_layer_sizes": (width, embedding),
        "mlpautoencoder__activation": trial.suggest_categorical("activation", ["tanh", "relu"]),
        "mlpautoencoder__learning_rate_init": trial.suggest_float(
            "learning_rate_init", 1e-3, 3e-2, log=True
        ),
        "mlpautoencoder__alpha": trial.suggest_float("alpha", 1e-6, 1e-2, log=True),
        "kneighborsclassifier__n_neighbors": trial.suggest_int("n_neighbors", 1, 15),
        "kneighborsclassifier__weights": trial.suggest_categorical(
            "weights", ["uniform", "distance"]
        ),
    }


experiment = mlx.Experiment(
    name="digits-autoencoder-knn",
    data=lambda: load_digits(return_X_y=True),
    estimator=make_pipeline(StandardScaler(), MLPAutoencoder(max_iter=100), KNeighborsClassifier()),
    search_space=embedding_space,
    metric="accuracy",
    split=(0.8, 0.1, 0.1),
    # Not digits_mlp.py's seed: the two examples would share a test split, and the test ledger
    # lets a split be evaluated once.
    seed=1,
    n_trials=20,
)
