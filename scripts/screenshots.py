"""Screenshots of the MLflow UI for the README's "Reading the results in the MLflow UI".

Runs three shipped examples with small budgets in a temporary folder, serves that folder's
store with ``mlx ui``, and photographs five pages with headless Chromium into ``docs/images/``:

- ``ui-runs.png``: the classifier comparison's runs table in the model-training view, sorted by
  the validation score (or mlx's saved view of the experiment, when it has one);
- ``ui-parent-run.png``: its parent run: description, the test metrics, the parameters;
- ``ui-leaderboard.png``: the parent run's ``leaderboard.png`` (the best trial of each model);
- ``ui-confusion-matrix.png``: the iris parent run's test confusion matrix;
- ``ui-compare-trials.png``: MLflow's comparison of six diabetes trials, from best to worst.

Rerun it after changing what mlx logs, then look at every image::

    python scripts/screenshots.py      # 2-3 minutes; needs chromium (apt-get install chromium)

MLflow's UI is a single-page app: each page is loaded with a budget of virtual time to render,
and an image with almost no colours (a page still loading) is taken again with a larger budget.
MLflow 3 opens its assistant panel on a local server's first visit; it is cut off the images.
"""

import argparse
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote, urlencode

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "iris": ("iris_knn.py", 12),
    "comparison": ("classifier_comparison.py", 20),
    "diabetes": ("diabetes_linear.py", 12),
}
WIDTH = 1600
# A rendered page has hundreds of colours; a blank or half-loaded one a few dozen.
MIN_COLOURS = 200
# Milliseconds of virtual time a page gets to render, doubled on each retry.
BUDGET = 20_000
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("screenshots: no chromium on PATH (Debian: apt-get install -y chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlx-screenshots-") as tmp:
        folder = Path(tmp)
        for file, n_trials in EXAMPLES.values():
            print(f"running {file} ({n_trials} trials) ...", flush=True)
            _mlx(folder, "run", ROOT / "experiments" / file, "--n-trials", n_trials)
        pages = _pages(f"sqlite:///{folder / 'mlflow.db'}")
        ui = subprocess.Popen(
            [sys.executable, "-m", "mlx", "ui", "--port", "0"],
            cwd=folder,
            env=_env(),
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            base = re.search(r"http://\S+", _first_line(ui.stdout)).group()
            for name, (fragment, height) in pages.items():
                path = args.out / f"{name}.png"
                _screenshot(chromium, f"{base}/#{fragment}", height, path, folder)
                print(f"{path}: {path.stat().st_size // 1024} KiB", flush=True)
        finally:
            os.kill(ui.pid, signal.SIGTERM)
            ui.wait(timeout=60)


def _env():
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def _mlx(folder, *args):
    done = subprocess.run(
        [sys.executable, "-m", "mlx", *map(str, args)],
        cwd=folder,
        env=_env(),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"screenshots: mlx {' '.join(map(str, args))} failed:\n{done.stderr}")


def _first_line(stream, timeout=300):
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    line = lines.get(timeout=timeout)
    if not line:
        sys.exit("screenshots: mlx ui stopped before printing its URL")
    return line


def _pages(tracking_uri):
    """``{image name: (URL fragment, window height)}`` for the runs of the examples."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    comparison, comparison_parent, comparison_key = _parent(client, "comparison")
    iris, iris_parent, _ = _parent(client, "iris")
    diabetes, diabetes_parent, diabetes_key = _parent(client, "diabetes")
    trials = client.search_runs([diabetes], f"tags.`mlflow.parentRunId` = '{diabetes_parent}'")
    scored = [run for run in trials if diabetes_key in run.data.metrics]
    ranked = sorted(scored, key=lambda run: -run.data.metrics[diabetes_key])
    # Six trials spread from the best to the worst: what the parameters of good ones share.
    spread = [ranked[round(i * (len(ranked) - 1) / 5)] for i in range(6)] if ranked else []
    model_training = {"workflowType": "machine_learning"}
    view = _saved_view(client, comparison)
    if view is None:
        runs = {
            **model_training,
            "orderByKey": f"metrics.`{comparison_key}`",
            "orderByAsc": "false",
        }
    else:
        runs = {**model_training, "viewStateShareKey": view}
    compare = {
        "runs": json.dumps(list(dict.fromkeys(run.info.run_id for run in spread))),
        "experiments": json.dumps([diabetes]),
        **model_training,
    }
    return {
        "ui-runs": (f"/experiments/{comparison}/runs?{_query(runs)}", 1000),
        "ui-parent-run": (
            f"/experiments/{comparison}/runs/{comparison_parent}?{_query(model_training)}",
            2000,
        ),
        "ui-leaderboard": (
            f"/experiments/{comparison}/runs/{comparison_parent}/artifacts/leaderboard.png"
            f"?{_query(model_training)}",
            1000,
        ),
        "ui-confusion-matrix": (
            f"/experiments/{iris}/runs/{iris_parent}/artifacts/test/confusion_matrix.png"
            f"?{_query(model_training)}",
            900,
        ),
        "ui-compare-trials": (f"/compare-runs?{_query(compare)}", 1500),
    }


def _parent(client, example):
    """``(experiment id, id of the latest parent run, validation metric key)`` of an example."""
    from mlx.tracking import schema

    file = EXAMPLES[example][0]
    for experiment in client.search_experiments():
        parents = client.search_runs(
            [experiment.experiment_id],
            f"tags.`{schema.TAG_ROLE}` = 'parent'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if parents and parents[0].data.tags.get(schema.TAG_EXPERIMENT_FILE, "").endswith(file):
            metric = parents[0].data.params[schema.PARAM_METRIC]
            return experiment.experiment_id, parents[0].info.run_id, schema.val(metric)
    sys.exit(f"screenshots: no parent run of {file} in the store")


def _saved_view(client, experiment_id):
    """The key of a saved runs-table view of the experiment (an experiment tag), if any."""
    prefix = "mlflow.sharedViewState."
    tags = client.get_experiment(experiment_id).tags
    keys = sorted(key.removeprefix(prefix) for key in tags if key.startswith(prefix))
    return keys[0] if keys else None


def _query(params):
    return urlencode(params, quote_via=quote)


def _screenshot(chromium, url, height, path, folder, attempts=3):
    budget = BUDGET
    for _ in range(attempts):
        with tempfile.TemporaryDirectory(dir=folder) as profile:
            raw = Path(profile) / "page.png"
            subprocess.run(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    f"--window-size={WIDTH},{height}",
                    f"--virtual-time-budget={budget}",
                    f"--screenshot={raw}",
                    url,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=300,
            )
            image = Image.open(raw).convert("RGB")
            if len(image.getcolors(maxcolors=1 << 20)) >= MIN_COLOURS:
                _without_assistant(image).quantize(256).save(path, optimize=True)
                return
        budget *= 2
    sys.exit(f"screenshots: {url} still looks blank after {attempts} attempts")


def _without_assistant(image):
    """``image`` cut left of MLflow's assistant panel, if the page shows one.

    The panel sits right of the page's card, past a gutter of the grey page background that
    runs the whole height: the rightmost such column in the right half is where to cut.
    """
    width, height = image.size
    rows = range(120, height - 40, 8)

    def gutter(x):
        grey = sum(all(abs(channel - 243) <= 3 for channel in image.getpixel((x, y))) for y in rows)
        return grey >= 0.97 * len(rows)

    cuts = [x for x in range(width // 2, width - 40) if gutter(x)]
    return image.crop((0, 0, cuts[-1] + 1, height)) if cuts else image


if __name__ == "__main__":
    main()
