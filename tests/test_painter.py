"""The painter: figures drawn in a helper process, the same as drawn here, never lost."""

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import matplotlib.style
import numpy as np
import optuna
import pytest

from mlx import painter
from mlx.evaluation import optimization_history_figure
from mlx.evaluation.figures import confusion_figure

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


@pytest.fixture(autouse=True)
def _helper_on(monkeypatch):
    monkeypatch.setenv(painter.ENVIRONMENT, "1")  # the suite turns it off (conftest.py)


CONFUSION = painter.Sketch(confusion_figure, (np.array([[5, 1], [2, 7]]), ["cat", "dog"]))


def _ready_helper():
    """The helper, started and past its imports (a helper still starting is not used)."""
    painter.start()
    helper = painter._PAINTER._helper
    assert helper.ready.wait(120), "the helper did not start"
    return helper


def _helper_answer(sketch):
    """What the helper itself answers for ``sketch``: ``(ok, PNG or None)``."""
    _ready_helper()
    future = painter._PAINTER.submit(sketch)
    assert future is not None, "no helper to hand the sketch to"
    return future.result(timeout=120)


def test_the_helper_draws_the_bytes_this_process_draws():
    ok, png = _helper_answer(CONFUSION)
    assert ok and png.startswith(b"\x89PNG")
    assert png == painter.render(CONFUSION)
    assert dict(painter.paint({"a.png": CONFUSION})) == {"a.png": png}


def test_a_figure_that_does_not_apply_is_left_out():
    none = painter.Sketch(optimization_history_figure, ([], [optuna.study.StudyDirection.MAXIMIZE]))
    assert _helper_answer(none) == (True, None)
    assert list(painter.paint({"none.png": none, "a.png": CONFUSION}))[0][0] == "a.png"


def test_a_figure_that_raises_raises_here():
    # Two labels for a 3 x 3 matrix: scikit-learn's display refuses them, in the helper too.
    bad = painter.Sketch(confusion_figure, (np.eye(3, dtype=int), ["a", "b"]))
    assert _helper_answer(bad) == (False, None)
    with pytest.raises(ValueError):
        list(painter.paint({"bad.png": bad}))


def test_a_sketch_that_does_not_pickle_is_drawn_here():
    local = painter.Sketch(lambda: confusion_figure(np.eye(2, dtype=int), ["a", "b"]))
    _ready_helper()
    assert painter._PAINTER.submit(local) is None
    ((name, png),) = painter.paint({"local.png": local})
    assert name == "local.png" and png == painter.render(local)


def test_a_dead_helper_leaves_its_figures_to_this_process_and_is_replaced():
    helper = _ready_helper()
    helper.process.kill()  # fault injection: the helper dies (out of memory, killed)
    helper.process.wait()
    assert dict(painter.paint({"a.png": CONFUSION})) == {"a.png": painter.render(CONFUSION)}
    painter.start()
    assert painter._PAINTER._helper is not helper
    assert _helper_answer(CONFUSION) == (True, painter.render(CONFUSION))


def test_a_helper_still_starting_leaves_the_figures_to_this_process():
    old = _ready_helper()
    old.process.kill()  # fault injection, as above: a new helper starts
    old.process.wait()
    painter.start()
    assert not painter._PAINTER._helper.ready.is_set()  # its imports take a second or more
    assert painter._PAINTER.submit(CONFUSION) is None
    assert dict(painter.paint({"a.png": CONFUSION})) == {"a.png": painter.render(CONFUSION)}


def test_a_sketch_that_came_while_the_helper_started_goes_to_it_once_ready(monkeypatch):
    """Collected after the helper is ready, it is drawn there, not here (no matplotlib import)."""
    old = _ready_helper()
    old.process.kill()  # fault injection, as above: a new helper starts
    old.process.wait()
    painter.start()
    figures = painter.paint({"a.png": CONFUSION})  # handed over while the helper imports
    assert painter._PAINTER._helper.ready.wait(120), "the helper did not start"
    png = painter.render(CONFUSION)

    def not_here(sketch):
        raise AssertionError("drawn in this process")

    monkeypatch.setattr(painter, "render", not_here)
    assert dict(figures) == {"a.png": png}


def test_study_plots_number_trials_as_the_study_did():
    study = optuna.create_study(direction="maximize")
    for value in (0.5, None, 0.7, 0.6):  # trial 1 pruned: the complete ones are 0, 2, 3
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    fig = optimization_history_figure(complete, study.directions)
    points = fig.axes[0].collections[0].get_offsets()
    assert points[:, 0].tolist() == [0, 2, 3]
    assert points[:, 1].tolist() == [0.5, 0.7, 0.6]


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    # A helper started by multiprocessing's spawn would import the user's script again.
    log = tmp_path / "ran.txt"
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import numpy as np
            from mlx import painter
            from mlx.evaluation.figures import confusion_figure

            with open({str(log)!r}, "a") as f:
                f.write("ran\\n")
            painter.start()
            assert painter._PAINTER._helper.ready.wait(120)
            sketch = painter.Sketch(confusion_figure, (np.eye(2, dtype=int), ["a", "b"]))
            assert painter._PAINTER.submit(sketch).result(timeout=120)[0]
            """
        )
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=180)
    assert log.read_text() == "ran\n"


def test_optuna_plots_do_not_restyle_the_figures_drawn_after_them():
    # Optuna's plots switch pyplot to ggplot for good; the helper draws every run's figures.
    study = optuna.create_study(direction="maximize")
    study.add_trials(
        [optuna.trial.create_trial(value=v, params={}, distributions={}) for v in (1, 2)]
    )
    history = painter.Sketch(optimization_history_figure, (study.trials, study.directions))
    with matplotlib.style.context("default"):  # whatever earlier tests did to this process
        before = painter.render(CONFUSION)
        painter.render(history)
        assert painter.render(CONFUSION) == before


def test_no_helper_starts_when_turned_off(monkeypatch):
    _ready_helper().close()
    monkeypatch.setenv(painter.ENVIRONMENT, "0")
    painter.start()
    assert painter._PAINTER._helper.process.poll() is not None  # the closed one, not a new one
    assert painter._PAINTER.submit(CONFUSION) is None


def test_without_a_helper_the_warm_up_runs_once_on_a_thread_and_figures_wait_for_it(
    monkeypatch,
):
    monkeypatch.setattr(painter, "_PAINTER", painter._Painter())  # no helper started
    warming, ended, calls, drawn = threading.Event(), threading.Event(), [], []

    def slow_warm_up():
        calls.append(threading.current_thread().name)
        warming.set()
        time.sleep(0.5)
        ended.set()

    def figure():
        drawn.append(ended.is_set())
        return confusion_figure(np.eye(2, dtype=int), ["a", "b"])

    monkeypatch.setattr(painter, "_warm_up", slow_warm_up)
    painter.warm_up()
    painter.warm_up()  # each look at the study asks again
    assert warming.wait(10)
    ((name, png),) = painter.paint({"a.png": painter.Sketch(figure)})
    assert png.startswith(b"\x89PNG") and drawn == [True]  # matplotlib, one thread at a time
    assert calls == ["mlx-warm-up"]


def test_a_helper_draws_so_no_warm_up_here(monkeypatch):
    monkeypatch.setattr(painter, "_PAINTER", painter._Painter())  # a run here may have warmed up
    try:
        _ready_helper()
        monkeypatch.setattr(painter, "_warm_up", lambda: pytest.fail("warmed up with a helper"))
        painter.warm_up()
        assert painter._PAINTER._warming is None
    finally:
        painter._PAINTER.close()


def test_a_run_with_local_workers_starts_no_helper_and_warms_up_here(stores, tmp_path, monkeypatch):
    """The cores are the workers': a helper's second of imports would slow their last trials
    and the refit. This process imports for its figures while it waits for them instead."""
    from click.testing import CliRunner

    from mlx.cli import cli

    monkeypatch.setattr(painter, "_PAINTER", painter._Painter())
    command = ["run", str(EXPERIMENTS / "iris_knn.py"), "--n-trials", "4", "--workers", "2"]
    done = CliRunner().invoke(cli, command, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert painter._PAINTER._helper is None
    assert painter._PAINTER._warming is not None and not painter._PAINTER._warming.is_alive()
    assert len(_figures(tmp_path)) >= 3


def _figures(folder):
    """``{artifact path: PNG bytes}`` of the figures a run in ``folder`` logged."""
    pngs = sorted((folder / "mlartifacts").rglob("*.png"))
    return {p.relative_to(p.parents[2]).as_posix(): p.read_bytes() for p in pngs}


@pytest.mark.slow  # two runs, one in a process of its own: 10-15 s
def test_a_run_logs_the_same_figures_with_and_without_the_helper(tmp_path, monkeypatch):
    import mlx

    def stores(folder):
        return {
            "tracking_uri": f"sqlite:///{folder}/mlflow.db",
            "storage": f"sqlite:///{folder}/o.db",
        }

    on, off = tmp_path / "on", tmp_path / "off"
    on.mkdir(), off.mkdir()
    # With the helper (ready before the run starts), in a process of its own: it never
    # imports matplotlib, so every figure was drawn by the helper.
    script = f"""
import sys
import mlx
from mlx import painter
painter.start()
assert painter._PAINTER._helper.ready.wait(120)
mlx.run({str(EXPERIMENTS / "iris_knn.py")!r}, n_trials=3, show_progress=False, **{stores(on)!r})
print("matplotlib imported:", "matplotlib" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=on,
        check=True,
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert "matplotlib imported: False" in done.stdout
    # Without it, here.
    monkeypatch.setenv(painter.ENVIRONMENT, "0")
    painter._PAINTER.close()
    monkeypatch.chdir(off)
    mlx.run(EXPERIMENTS / "iris_knn.py", n_trials=3, show_progress=False, **stores(off))

    figures = {"on": _figures(on), "off": _figures(off)}
    assert (
        set(figures["on"])
        == set(figures["off"])
        >= {
            "artifacts/test/confusion_matrix.png",
            "artifacts/search/optimization_history.png",
            "artifacts/search/param_importances.png",
        }
    )
    # Importances come from a random forest Optuna seeds anew: the other figures are the same.
    for name in figures["on"]:
        if not name.endswith("param_importances.png"):
            assert figures["on"][name] == figures["off"][name], name
