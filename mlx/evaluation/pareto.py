"""Accuracy against cost: the Pareto front of a search's trials, as a table and a figure.

A trial is on the front when no other trial is at least as good in every respect (score at
least as high, every cost at least as low) and better in one. The costs are those the
experiment limits (pickled model size, fit time); the rows come from
:func:`mlx.search.trial_costs`.
"""

import csv
import io
import math

from mlx.tracking._schema import val

__all__ = ["cost_csv", "cost_figure", "pareto_front"]

# How each cost reads on an axis.
_LABELS = {"model_bytes": "model size (bytes, pickled)", "fit_seconds": "fit time (s)"}


def pareto_front(rows, costs):
    """The numbers of the trials on the front of score against ``costs``.

    Parameters
    ----------
    rows : list of dict
        One per complete trial: ``number``, ``value`` (greater is better) and each cost (lower
        is better; None where unknown, which keeps the trial off the front).
    costs : sequence of str
        The cost keys the front is drawn over.

    Returns
    -------
    front : set of int
    """
    points = [
        (r["number"], r["value"], [r[c] for c in costs])
        for r in rows
        if all(r[c] is not None and math.isfinite(r[c]) for c in costs)
    ]
    front = set()
    for number, value, cost in points:
        dominated = any(
            v >= value
            and all(a <= b for a, b in zip(c, cost, strict=True))
            and (v > value or any(a < b for a, b in zip(c, cost, strict=True)))
            for _, v, c in points
        )
        if not dominated:
            front.add(number)
    return front


def cost_csv(rows, metric_name, limits, chosen):
    """The trials' scores and costs as CSV text, with ``feasible``, ``pareto`` and ``chosen``.

    ``pareto`` marks the front over the limited costs; ``chosen`` the trial refit and tested.
    """
    front = pareto_front(rows, list(limits))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["trial", "model", val(metric_name), "model_bytes", "fit_seconds", "feasible", "pareto",
         "chosen"]
    )  # fmt: skip
    for r in rows:
        cells = [r["number"], r["model"], r["value"], r["model_bytes"], r["fit_seconds"]]
        flags = [r["feasible"], r["number"] in front, r["number"] == chosen]
        writer.writerow(["" if c is None else c for c in cells] + [int(f) for f in flags])
    return buf.getvalue()


def cost_figure(rows, metric_name, limits, chosen):
    """Validation score against each limited cost: feasible and infeasible trials, the front.

    One panel per limit, with the limit as a dashed line and the chosen trial starred.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    front = pareto_front(rows, list(limits))
    fig = Figure(figsize=(5.5 * len(limits), 4.2))
    axes = fig.subplots(1, len(limits), squeeze=False)[0]
    for ax, (cost, limit) in zip(axes, limits.items(), strict=True):
        known = [r for r in rows if r[cost] is not None]
        for ok, style in ((True, dict(marker="o", color="tab:blue", label="within the limits")),
                          (False, dict(marker="x", color="0.55", label="over a limit"))):  # fmt: skip
            shown = [r for r in known if r["feasible"] == ok]
            if shown:
                ax.scatter([r[cost] for r in shown], [r["value"] for r in shown], s=22, **style)
        on_front = sorted((r for r in known if r["number"] in front), key=lambda r: r[cost])
        if on_front:
            xs, ys = [r[cost] for r in on_front], [r["value"] for r in on_front]
            if len(limits) == 1:  # in 2-D the front is a staircase
                ax.step(xs, ys, where="post", color="tab:orange", lw=1, zorder=1)
            ax.scatter(xs, ys, s=90, facecolors="none", edgecolors="tab:orange", label="front")
        picked = [r for r in known if r["number"] == chosen]
        if picked:
            ax.scatter([picked[0][cost]], [picked[0]["value"]], s=220, marker="*",
                       color="tab:red", zorder=3, label=f"chosen: trial {chosen}")  # fmt: skip
        ax.axvline(limit, color="tab:red", ls="--", lw=1, label=f"limit {limit:g}")
        if known and min(r[cost] for r in known) > 0:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap
        ax.set_xlabel(_LABELS[cost])
        ax.set_ylabel(f"validation {metric_name}")
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_title("Accuracy against cost (complete trials)", loc="left")
    fig.tight_layout()
    return fig
