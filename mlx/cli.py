"""The ``mlx`` command: ``run``, ``test``, ``worker``, ``list``, ``show``, ``ui`` and ``dashboard``; thin
over the runner.

MLflow, Optuna and scikit-learn are imported inside the commands, so that ``mlx --help`` does not
pay for them. Errors that ``mlx`` raises on purpose become one line on stderr and the exit code of
their class (2 for an invalid experiment or data); anything else keeps its traceback.
"""

import contextlib
import gc
import json
from pathlib import Path

import click

from mlx.console import one_line_errors, quiet_libraries

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlx-experiments", prog_name="mlx")
def cli():
    """Honest, tracked experiments: search on validation, test once, log to MLflow."""


_tracking_option = click.option(
    "--tracking-uri",
    metavar="URI",
    help="MLflow store [default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here].",
)


_heartbeat_option = click.option(
    "--heartbeat",
    type=click.IntRange(min=1),
    metavar="S",
    help="Seconds between running trials' heartbeats; a trial silent for 3 x S is failed and "
    "replaced [default: 10 with workers or a database server, else off].",
)


_set_option = click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change an Experiment setting (seed, split, metric, ...) or a fixed estimator "
    "parameter (step__param) for this run; VALUE is a Python literal, else a plain string. "
    "Repeatable. Another definition: resume, workers and `mlx test` need the same.",
)


_register_option = click.option(
    "--register",
    metavar="NAME",
    help="Register the tested model as a new version of NAME in MLflow's model registry, "
    "with the alias 'candidate' (models:/NAME@candidate).",
)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@_set_option
@click.option("--n-trials", type=click.IntRange(min=1), help="Trials to run (overrides the file).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="Stop the search after S seconds.",
)
@click.option("--seed", type=click.IntRange(min=0), help="Seed of split, sampler and estimator.")
@_tracking_option
@click.option(
    "--storage", metavar="URL", help="Optuna storage [default: sqlite:///mlx-optuna.db here]."
)
@click.option(
    "--no-test", is_flag=True, help="Search and validate only; do not touch the test split."
)
@click.option(
    "--allow-test-reuse",
    is_flag=True,
    help="Evaluate a test split that was already evaluated (the run records the count).",
)
@click.option(
    "--resume",
    is_flag=False,
    flag_value="latest",
    default=None,
    metavar="[RUN_ID]",
    help="Continue the latest unfinished run of this experiment (or RUN_ID) until its "
    "n_trials trials have a result; --n-trials sets a new total.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes running trials on this machine, this one included.",
)
@_heartbeat_option
@_register_option
@one_line_errors
def run(
    file,
    assignments,
    n_trials,
    timeout,
    seed,
    tracking_uri,
    storage,
    no_test,
    allow_test_reuse,
    resume,
    workers,
    heartbeat,
    register,
):
    """Run the experiment FILE: audit, split, search, refit, test once, log to MLflow.

    This process coordinates: it splits, creates the study and the parent run, runs trials, and
    evaluates the test split once every trial (its own and any worker's) has finished.
    --n-trials, --timeout, --seed and --register are short for --set n_trials=N and so on.
    """
    from mlx import painter
    from mlx.local_workers import started_early
    from mlx.overrides import assignments as texts
    from mlx.overrides import parse, with_flags

    # --n-trials, --seed and the like are --set's short forms: merged once, here, so that the
    # workers started early and the run get the same overrides.
    flags = {"n_trials": n_trials, "timeout": timeout, "seed": seed, "register": register}
    overrides = with_flags(parse(assignments), flags)
    with contextlib.ExitStack() as stack:
        if workers == 1:
            # Drawing the figures in a helper process pays matplotlib's import on another core
            # while this one loads the experiment (as mlx.run does, but earlier).
            painter.start()
        else:
            # The workers import and load the data while this process does (mlx.run starts
            # them too, but after this process has imported scikit-learn, Optuna and MLflow).
            early = started_early(
                file,
                workers - 1,
                texts(overrides),
                tracking_uri=tracking_uri,
                storage=storage,
                heartbeat=heartbeat,
            )
            stack.enter_context(early)
        # Imported once the helper or the workers have started: it imports scikit-learn (a
        # second or more), which they would otherwise wait for.
        from mlx.experiment import load_experiment

        experiment = load_experiment(file)
        quiet_libraries()
        from mlx.runner import run as run_experiment

        result = run_experiment(
            experiment,
            tracking_uri=tracking_uri,
            storage=storage,
            no_test=no_test,
            allow_test_reuse=allow_test_reuse,
            show_progress=True,
            resume=resume,
            workers=workers,
            heartbeat=heartbeat,
            overrides=overrides,
        )
    click.echo(result.summary())


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@_tracking_option
@click.option(
    "--storage",
    metavar="URL",
    envvar="MLX_STORAGE",
    help="The coordinator's Optuna storage [default: $MLX_STORAGE, else sqlite:///mlx-optuna.db].",
)
@click.option("--seed", type=click.IntRange(min=0), help="The coordinator's --seed, if it had one.")
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), metavar="S", help="Stop after S s."
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=600,
    show_default=True,
    metavar="S",
    help="How long to wait for the coordinator to start.",
)
@_heartbeat_option
@click.option("--worker-id", help="Name of this worker [default: host-pid].")
@click.option("--quiet", is_flag=True, help="Print nothing when done.")
@_set_option
@one_line_errors
def worker(
    file, tracking_uri, storage, seed, timeout, wait, heartbeat, worker_id, quiet, assignments
):
    """Join the running search of experiment FILE and run its trials until the budget is spent.

    Start any number, on any machine that reaches the same --storage and --tracking-uri, before
    or after the coordinator (`mlx run`).
    """
    from mlx.experiment import load_experiment
    from mlx.overrides import parse

    overrides = parse(assignments)
    experiment = load_experiment(file)
    quiet_libraries()
    from mlx.workers import work

    ran = work(
        experiment,
        tracking_uri=tracking_uri,
        storage=storage,
        seed=seed,
        timeout=timeout,
        wait=wait,
        heartbeat=heartbeat,
        worker_id=worker_id,
        overrides=overrides,
    )
    if not quiet:
        click.echo(f"worker done: ran {ran} trials; the study's budget is spent.")


@cli.command("test")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--run", "run_id", metavar="RUN_ID", help="The run [default: the latest untested].")
@_tracking_option
@click.option(
    "--storage", metavar="URL", help="Optuna storage [default: sqlite:///mlx-optuna.db here]."
)
@click.option(
    "--allow-test-reuse",
    is_flag=True,
    help="Evaluate a test split that was already evaluated (the run records the count).",
)
@_set_option
@_register_option
@one_line_errors
def test_(file, run_id, tracking_uri, storage, allow_test_reuse, assignments, register):
    """Evaluate the test split once for a run of FILE searched with --no-test; no new trials."""
    from mlx.experiment import load_experiment
    from mlx.overrides import parse

    overrides = parse(assignments)
    experiment = load_experiment(file)
    quiet_libraries()
    from mlx.runner import run_test

    result = run_test(
        experiment,
        run_id=run_id,
        tracking_uri=tracking_uri,
        storage=storage,
        allow_test_reuse=allow_test_reuse,
        overrides=overrides,
        register=register,
    )
    click.echo(result.summary())


_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")


@cli.command("list")
@_tracking_option
@_json_option
@one_line_errors
def list_(tracking_uri, as_json):
    """List experiments with their latest run's best validation and test scores."""
    from mlx.stores import redact_url
    from mlx.tracking import resolve_tracking_uri, views

    uri = resolve_tracking_uri(tracking_uri)
    tracker = _tracker(uri)
    rows = [] if tracker is None else views.experiments(tracker)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no mlx experiments in {redact_url(uri)}")
        return
    header = ["experiment", "runs", "latest", "status", "metric", "best val", "test", "run id"]
    table = [
        [
            r["experiment"],
            str(r["runs"]),
            r["latest"],
            r["status"],
            r["metric"],
            _scored(r["best_val"]),
            _scored(r["test"]),
            r["run_id"],
        ]
        for r in rows
    ]
    click.echo(_table(header, table))


@cli.command()
@click.argument("name")
@_tracking_option
@click.option("--run", "run_id", metavar="RUN_ID", help="A run of NAME [default: the latest].")
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Number of trials to show.",
)
@click.option("--full", is_flag=True, help="Numbers at full precision.")
@_json_option
@one_line_errors
def show(name, tracking_uri, run_id, top, full, as_json):
    """The trials of experiment NAME's latest run: the tested one first, then by score.

    NAME is the experiment's name (as `mlx list` shows it) or its file."""
    from mlx.exceptions import TrackingError
    from mlx.stores import redact_url
    from mlx.tracking import resolve_tracking_uri, views

    if name.endswith(".py") and Path(name).is_file():
        from mlx.experiment import load_experiment

        name = load_experiment(name).name
    uri = resolve_tracking_uri(tracking_uri)
    tracker = _tracker(uri)
    if tracker is None:
        raise TrackingError(f"no MLflow store at {redact_url(uri)}: no run has been made here.")
    view = views.run_view(tracker, name, run_id)
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    digits = None if full else 4
    metric = view["metric"]
    best = _scored(view["best_val"], digits)
    click.echo(
        f"{view['run']}: run {view['run_id']} ({view['status']}), {len(view['trials'])} trials; "
        f"best val {metric} {best}; test {metric} {_scored(view['test'], digits)}"
    )
    if view["models"]:
        click.echo(_model_table(view["models"], metric) + "\n")
    rows = [
        [
            ("* " if t["chosen"] else "  ") + t["name"],
            t["state"],
            _number(t["value"], digits),
            _number(t["train"], digits),
            _number(t["fit_time"], 3),
            ", ".join(
                f"{k.split('__')[-1]}={_short(v, digits)}" for k, v in sorted(t["params"].items())
            ),
        ]
        for t in view["trials"][:top]
    ]
    click.echo(_table(["trial", "state", f"val {metric}", "train", "fit s", "params"], rows))
    if any(t["chosen"] for t in view["trials"]):
        if view["test"] is not None:
            click.echo("* refit and tested")
        elif view["status"] == "FINISHED":
            click.echo("* refit (not tested yet: `mlx test`)")
        else:
            click.echo("* best so far (the run did not finish: `mlx run FILE --resume`)")


def _tracker(uri):
    """The store at ``uri``, or None when it is a local file that does not exist (not created)."""
    from mlx.stores import sqlite_path
    from mlx.tracking import Tracker

    path = sqlite_path(uri)
    if path is not None and not path.exists():
        return None
    quiet_libraries()
    return Tracker(uri)


def _scored(scored, digits=4):
    """``0.9667 [0.9000, 1.0000]`` from a view's ``{"value", "ci"}``; "-" without."""
    if scored is None:
        return "-"
    text = _number(scored["value"], digits)
    if scored["ci"] is not None:
        low, high = (_number(v, digits) for v in scored["ci"])
        text += f" [{low}, {high}]"
    return text


def _short(value, digits):
    """A parameter as text; numbers to ``digits`` significant digits."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if digits is None or number.is_integer():
        return str(value)
    return f"{number:.{digits}g}"


def _model_table(trials, metric):
    """The per-model leaderboard of a search over several model types."""
    from mlx.evaluation import leaderboard
    from mlx.tracking import schema

    rows = [
        [
            r["model"],
            _number(r["best_value"]),
            "-" if r["best_trial"] is None else schema.trial_name(r["best_trial"]),
            _number(r["fit_time"], 3),
            _number(r["size"] and r["size"] / 1024, 1),
            f"{r['complete']}/{r['pruned']}/{r['fail']}",
        ]
        for r in leaderboard(trials)
    ]
    header = ["model", f"best val {metric}", "best trial", "fit s", "KiB", "complete/pruned/fail"]
    return _table(header, rows)


@cli.command()
@_tracking_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=5000,
    show_default=True,
    help="Port on 127.0.0.1; 0 picks a free one.",
)
@one_line_errors
def ui(tracking_uri, port):
    """Serve the MLflow UI on this store (127.0.0.1 only) until Ctrl-C.

    The URL is printed once the UI answers (MLflow takes 10-30 s to start).
    """
    from mlx.servers import mlflow_ui, require_store, serve
    from mlx.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    server = mlflow_ui(uri)
    require_store(uri, nothing="no runs here", option="--tracking-uri")
    serve(server, port)


@cli.command()
@click.option(
    "--storage", metavar="URL", help="Optuna storage [default: sqlite:///mlx-optuna.db here]."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port on 127.0.0.1; 0 picks a free one.",
)
@one_line_errors
def dashboard(storage, port):
    """Serve optuna-dashboard on the Optuna storage (127.0.0.1 only) until Ctrl-C.

    Needs the dashboard extra: pip install "mlx-experiments[dashboard]".
    """
    from mlx.search.storage import resolve_storage
    from mlx.servers import optuna_dashboard, require_store, serve

    url = resolve_storage(storage)
    server = optuna_dashboard(url)
    require_store(url, nothing="no studies here", option="--storage")
    serve(server, port)


def _number(value, digits=4):
    """``value`` with ``digits`` decimals (all of them for None); "-" for a missing value."""
    if value is None:
        return "-"
    return repr(float(value)) if digits is None else f"{value:.{digits}f}"


def _table(header, rows):
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None):
    """Entry point of the ``mlx`` console script."""
    try:
        cli.main(args=argv, prog_name="mlx")
    finally:
        # Python's teardown runs the cycle collector over every object left (about 430,000
        # after a run: MLflow, SQLAlchemy, matplotlib), a second of a short run; frozen, they
        # are freed with the process. Exit handlers still run, and files are closed as usual.
        gc.freeze()


if __name__ == "__main__":
    main()
