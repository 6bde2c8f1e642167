"""The leaderboard of a search over several model types: the best trial of each type."""

import csv
import io
import math

from mlx.tracking._schema import best_val

__all__ = ["leaderboard", "leaderboard_csv", "leaderboard_figure"]

_LEADERBOARD_STATES = ("COMPLETE", "PRUNED", "FAIL")


def leaderboard(trials, models=()):
    """The best trial of each model type of a search over several.

    Parameters
    ----------
    trials : iterable of dict
        One per trial, with keys ``number``, ``model``, ``state`` (``"COMPLETE"``, ``"PRUNED"``,
        ``"FAIL"``, ...), ``value`` (validation score), ``fit_time`` (seconds) and ``size``
        (bytes of the pickled fitted model); the last three may be None. A trial with
        ``within_limits`` False (over an experiment's limits on cost) counts among its model's
        trials but is not its best.
    models : sequence of str, default=()
        Model names to list even without trials, in this order.

    Returns
    -------
    rows : list of dict
        One per model, best validation score first (ties: the earlier trial first; models
        without a complete trial last):
        ``model``, ``best_trial``, ``best_value``, ``fit_time`` and ``size`` of that trial
        (None without a complete trial), and the number of trials per state (``complete``,
        ``pruned``, ``fail``).
    """
    rows = {}

    def row(model):
        empty = {"model": model, "best_trial": None, "best_value": None}
        empty.update(fit_time=None, size=None)
        empty.update({state.lower(): 0 for state in _LEADERBOARD_STATES})
        return rows.setdefault(model, empty)

    for model in models:
        row(model)
    for trial in sorted(trials, key=lambda t: t["number"]):
        entry = row(trial["model"])
        if trial["state"] in _LEADERBOARD_STATES:
            entry[trial["state"].lower()] += 1
        value = trial.get("value")
        if trial["state"] != "COMPLETE" or value is None or not math.isfinite(value):
            continue
        if trial.get("within_limits") is False:
            continue
        if entry["best_value"] is None or value > entry["best_value"]:
            entry.update(best_trial=trial["number"], best_value=float(value))
            entry.update(fit_time=trial.get("fit_time"), size=trial.get("size"))
    order = list(rows)
    # Ties go to the earlier trial, as Optuna's best trial does: the first row is the winner.
    return sorted(
        rows.values(),
        key=lambda r: (
            r["best_value"] is None,
            -(r["best_value"] or 0.0),
            r["best_trial"] if r["best_trial"] is not None else 0,
            order.index(r["model"]),
        ),
    )


def leaderboard_csv(rows, metric_name):
    """The rows of :func:`leaderboard` as CSV text (empty cells where a model has no result)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    states = [state.lower() for state in _LEADERBOARD_STATES]
    writer.writerow(
        ["model", "best_trial", best_val(metric_name), "fit_time_s", "size_bytes", *states]
    )
    for r in rows:
        cells = [r["model"], r["best_trial"], r["best_value"], r["fit_time"], r["size"]]
        writer.writerow(["" if c is None else c for c in cells] + [r[s] for s in states])
    return buf.getvalue()


def leaderboard_figure(rows, metric_name):
    """Bar charts of the leaderboard: best validation score, its fit time and model size."""
    from matplotlib.figure import Figure

    names = [r["model"] for r in rows][::-1]
    fig = Figure(figsize=(11, 1.2 + 0.45 * len(rows)))
    axes = fig.subplots(1, 3, sharey=True)
    panels = [
        ("best_value", f"best validation {metric_name}", 1.0),
        ("fit_time", "fit time of that trial (s)", 1.0),
        ("size", "size of that model (KiB, pickled)", 1 / 1024),
    ]
    for ax, (key, label, scale) in zip(axes, panels, strict=True):
        values = [r[key] for r in rows][::-1]
        heights = [0.0 if v is None else v * scale for v in values]
        # The winner (first row) stands out; models without a complete trial get no bar.
        colors = ["tab:orange" if i == len(names) - 1 else "tab:blue" for i in range(len(names))]
        ax.barh(names, heights, color=colors)
        for i, v in enumerate(values):
            if v is None:
                # Complete trials without a best were all over the experiment's limits.
                complete = rows[len(names) - 1 - i]["complete"]
                text = "none within the limits" if complete else "no complete trial"
            else:
                text = f"{v * scale:.4g}"
            ax.text(heights[i], i, " " + text, va="center", fontsize=8)
        ax.set_xlabel(label)
        ax.margins(x=0.25)
    axes[0].set_title("Model types on the validation split", loc="left")
    fig.tight_layout()
    return fig
