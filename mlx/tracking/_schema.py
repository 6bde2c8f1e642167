"""Every name mlx writes to MLflow: tags, params, metrics, artifact paths.

The runner and the tracking store write these names; ``mlx list``, ``mlx show`` and the tests
read them back. All of them are spelled here and nowhere else, so that a name cannot drift
between the writer and its readers. Names that depend on the experiment's metric are built by
the functions below (``val("accuracy") == "val_accuracy"``).
"""

__all__ = [
    "ARTIFACT_AUDIT",
    "ARTIFACT_PARAMS",
    "ARTIFACT_SOURCE_REPORT",
    "ARTIFACT_EXPERIMENT",
    "ARTIFACT_SEARCH",
    "ARTIFACT_SPLIT",
    "ARTIFACT_TEST",
    "CI_SUFFIXES",
    "COST_CSV",
    "COST_PNG",
    "DECISION_BOUNDARIES",
    "EXPERIMENT_KIND",
    "EXPERIMENT_NOTE",
    "LEADERBOARD_CSV",
    "NO_INTERVAL",
    "OPTIMIZATION_HISTORY",
    "PARAM_IMPORTANCES",
    "LEADERBOARD_PNG",
    "LEARNING_CURVE",
    "METRIC_BEST_EPOCH",
    "METRIC_EPOCHS",
    "METRIC_FIT_TIME",
    "METRIC_MODEL_BYTES",
    "METRIC_STOPPED_EPOCH",
    "DATASET_CONTEXTS",
    "MLFLOW_DATASET_CONTEXT",
    "MLFLOW_GIT_COMMIT",
    "MLFLOW_NOTE",
    "MLFLOW_PARENT_RUN",
    "MLFLOW_RUN_NAME",
    "MLFLOW_SOURCE",
    "PARAM_DATA_FEATURES",
    "PARAM_DATA_ROWS",
    "PARAM_ESTIMATOR",
    "PARAM_METRIC",
    "PARAM_MODELS",
    "PARAM_MODEL_BUDGET",
    "PARAM_N_TRIALS",
    "PARAM_REFIT",
    "PARAM_SEED",
    "PARAM_TASK",
    "PARAM_VALIDATION",
    "ROLE_PARENT",
    "SAVED_VIEW",
    "ROLE_TRIAL",
    "TAG_BEST_TRIAL",
    "TAG_COORDINATOR",
    "TAG_ERROR",
    "TAG_ESTIMATOR",
    "TAG_EVALUATED",
    "TAG_EXPERIMENT_FILE",
    "TAG_FINGERPRINT",
    "TAG_GIT_DIRTY",
    "TAG_HASH",
    "TAG_MODEL",
    "TAG_MODEL_URI",
    "TAG_OPTUNA_STORAGE",
    "TAG_OVERRIDES",
    "TAG_REGISTERED",
    "REGISTRY_ALIAS",
    "TAG_EXPERIMENT",
    "TAG_RUN_NAME",
    "TAG_ROLE",
    "TAG_RUN_NUMBER",
    "TAG_STATE",
    "TAG_STUDY",
    "TAG_TRIAL",
    "TAG_USE_COUNT",
    "TAG_WARNINGS",
    "TAG_WITHIN_LIMITS",
    "TAG_WORKER",
    "best_param",
    "ci_high",
    "ci_low",
    "best_val",
    "estimator_param",
    "fold",
    "limit_param",
    "rows_param",
    "run_name",
    "split_param",
    "spread",
    "test",
    "train",
    "trial_name",
    "trials_tag",
    "val",
    "version_tag",
]

# --- tags of every mlx run -----------------------------------------------------------------------
TAG_ROLE = "mlx.role"  # ROLE_PARENT or ROLE_TRIAL
ROLE_PARENT = "parent"
ROLE_TRIAL = "trial"
TAG_STUDY = "mlx.study_name"
TAG_ERROR = "mlx.error"

# --- tags of a parent run ------------------------------------------------------------------------
TAG_HASH = "mlx.definition_hash"
# The run's number among the runs of its experiment ("iris-knn #3"), and its coordinator.
TAG_RUN_NUMBER = "mlx.run_number"
TAG_COORDINATOR = "mlx.coordinator"  # host:pid
# The test ledger: a parent run's test split, how often it was used, and whether this run did.
TAG_FINGERPRINT = "mlx.test_fingerprint"
TAG_USE_COUNT = "mlx.test_use_count"
TAG_EVALUATED = "mlx.test_evaluated"
TAG_OPTUNA_STORAGE = "mlx.optuna_storage"  # redacted
TAG_BEST_TRIAL = "mlx.best_trial"
TAG_MODEL_URI = "mlx.model_uri"
TAG_ESTIMATOR = "mlx.estimator"  # the repr of the estimator(s)
TAG_EXPERIMENT_FILE = "mlx.experiment_file"
# What --set changed (JSON: key -> the value as --set reads it); absent without overrides.
TAG_OVERRIDES = "mlx.overrides"
# The model registry: the version this run registered (models:/<name>/<version>).
TAG_REGISTERED = "mlx.registered_model"
TAG_GIT_DIRTY = "mlx.git_dirty"
# MLflow's own tags, which its UI shows.
MLFLOW_SOURCE = "mlflow.source.name"
MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
MLFLOW_PARENT_RUN = "mlflow.parentRunId"
MLFLOW_NOTE = "mlflow.note.content"  # the run's description in the UI
MLFLOW_RUN_NAME = "mlflow.runName"  # setting it renames the run
MLFLOW_DATASET_CONTEXT = "mlflow.data.context"  # training, validation or test
# The context of each split's dataset input.
DATASET_CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
# The MLflow 3 UI opens experiments in its GenAI view unless they say they train models.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# An experiment's description in the UI's experiments list (the experiment file's first line).
EXPERIMENT_NOTE = "mlflow.note.content"
# A saved runs-table view of the experiment, as the MLflow 3 UI stores them (experiment tags
# named "mlflow.sharedViewState.<key>"; an internal format of the UI, not a documented API).
SAVED_VIEW = "mlflow.sharedViewState.mlx"


def trial_name(number, model=None, state=None):
    """A child run's name: ``trial-0003``, with the model type and ``pruned`` when they apply.

    The MLflow UI shows pruned trials as finished like complete ones, and the runs table shows
    names before any other column: the name says what the status cannot.
    """
    parts = [f"trial-{number:04d}", model, "pruned" if state == "PRUNED" else None]
    return " ".join(part for part in parts if part)


def run_name(experiment_name, number):
    """The parent run's name: the experiment's name and the run's number."""
    return f"{experiment_name} #{number}"


def trials_tag(state):
    """Number of the study's trials in ``state`` (``"COMPLETE"``, ``"PRUNED"``, ...)."""
    return f"mlx.trials_{state.lower()}"


def version_tag(distribution):
    """Version of ``distribution`` (``"numpy"``, ``"mlx"``, ``"python"``) that ran the run."""
    return f"mlx.version.{distribution}"


# --- tags of a trial (child) run -----------------------------------------------------------------
TAG_TRIAL = "mlx.trial_number"
TAG_STATE = "mlx.trial_state"  # COMPLETE, PRUNED, FAIL or RUNNING
TAG_WORKER = "mlx.worker"
TAG_WARNINGS = "mlx.warnings"
# The chosen model of a trial in a search over several model types.
TAG_MODEL = "mlx.model"
# Whether a trial kept within the experiment's limits on cost ("true", "false"); absent without.
TAG_WITHIN_LIMITS = "mlx.within_limits"

# --- the model registry ----------------------------------------------------------------------------
# The alias of the latest registered (tested, not yet promoted) version of a registered model.
REGISTRY_ALIAS = "candidate"
# Tags of a registered model version, beside the test metrics (test_<m>, test_<m>_ci_low, ...).
TAG_EXPERIMENT = "mlx.experiment"
TAG_RUN_NAME = "mlx.run_name"

# --- params of a parent run ----------------------------------------------------------------------
PARAM_ESTIMATOR = "mlx.estimator"  # the estimator's class name
PARAM_MODELS = "mlx.models"
PARAM_MODEL_BUDGET = "mlx.model_budget"
PARAM_TASK = "mlx.task"
PARAM_METRIC = "mlx.metric"
PARAM_SEED = "mlx.seed"
PARAM_N_TRIALS = "mlx.n_trials"
PARAM_REFIT = "mlx.refit"
PARAM_VALIDATION = "mlx.validation"  # "holdout" or the number of folds
PARAM_DATA_ROWS = "mlx.data.rows"
PARAM_DATA_FEATURES = "mlx.data.features"


def split_param(split):
    """The fraction of the data in ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
    return f"mlx.split.{split}"


def rows_param(split):
    """The number of rows in ``split``."""
    return f"mlx.rows.{split}"


def limit_param(cost):
    """The experiment's limit on ``cost`` (``"model_bytes"``, ``"fit_seconds"``)."""
    return f"mlx.max_{cost}"


def estimator_param(model):
    """The class name of candidate ``model`` in a search over several model types."""
    return f"mlx.estimator.{model}"


def best_param(name):
    """Parameter ``name`` of the best configuration (the one refit and tested)."""
    return f"best.{name}"


# --- metrics -------------------------------------------------------------------------------------
def val(metric):
    """A trial's validation score (per epoch for epoch-by-epoch training)."""
    return f"val_{metric}"


def train(metric):
    """A trial's score on its training split (per epoch for epoch-by-epoch training)."""
    return f"train_{metric}"


def best_val(metric):
    """The parent run's best validation score."""
    return f"best_val_{metric}"


def test(metric):
    """A metric of the single test evaluation, on the parent run."""
    return f"test_{metric}"


# pytest collects functions named test*: this one is a name builder, not a test.
test.__test__ = False  # type: ignore[attr-defined]


def ci_low(name):
    """The lower end of the confidence interval of metric ``name`` (``test_accuracy``)."""
    return f"{name}_ci_low"


def ci_high(name):
    """The upper end of the confidence interval of metric ``name``."""
    return f"{name}_ci_high"


def fold(name):
    """Metric ``name`` of each cross-validation fold (one step per fold)."""
    return f"{name}_fold"


def spread(name):
    """The standard deviation of metric ``name`` over the cross-validation folds."""
    return f"{name}_std"


# What ci_low and ci_high append.
CI_SUFFIXES = (ci_low(""), ci_high(""))

METRIC_FIT_TIME = "fit_time"
METRIC_MODEL_BYTES = "model_bytes"
METRIC_EPOCHS = "epochs"
# Early stopping under the runner: the epoch of the best validation score, and the last one.
METRIC_BEST_EPOCH = "best_epoch"
METRIC_STOPPED_EPOCH = "stopped_epoch"

# --- artifacts of a parent run -------------------------------------------------------------------
ARTIFACT_AUDIT = "audit.json"
ARTIFACT_SPLIT = "split.json"
ARTIFACT_PARAMS = "estimator_params.json"  # every parameter, defaults included
ARTIFACT_SOURCE_REPORT = "data_source_report.json"  # e.g. files skipped by an audio loader
ARTIFACT_EXPERIMENT = "experiment"  # folder of the experiment file
ARTIFACT_TEST = "test"  # folder of the test evaluation's tables and figures
ARTIFACT_SEARCH = "search"  # folder of the study's figures
NO_INTERVAL = "test/no_interval.json"  # why some test metrics have no interval
LEARNING_CURVE = "learning_curve.png"  # under ARTIFACT_SEARCH, as the two below
OPTIMIZATION_HISTORY = "optimization_history.png"
PARAM_IMPORTANCES = "param_importances.png"
LEADERBOARD_CSV = "leaderboard.csv"
LEADERBOARD_PNG = "leaderboard.png"
DECISION_BOUNDARIES = "decision_boundaries.png"
# Accuracy against cost (an experiment with limits), under ARTIFACT_SEARCH.
COST_CSV = "cost.csv"
COST_PNG = "cost.png"
