"""Figures drawn to PNG in a helper process, while the run does its own work.

A short run spends about a second on its figures: matplotlib's import, the first figure's font
set-up, then drawing and encoding each PNG. A helper process started with the run pays the import
on another core while the run loads its data and searches; figures go to it as sketches (a figure
function and its arguments) and come back as PNG bytes, the bytes this process would draw.

Whatever the helper cannot do (it was not started or died, a sketch does not pickle or unpickle
there, a figure raises) is drawn in this process instead, so a figure is never lost and a
figure's own error is raised here, with its traceback. One helper serves every run of the
process (a notebook, a test session); it ends when this process does. A process that runs
without a helper (a run with local workers: the cores are theirs) can :func:`warm_up` instead:
import on a thread ahead of its first figure.

The helper is a plain ``python -c`` child, not a multiprocessing one: spawning would import the
user's ``__main__`` script again in the helper, running its top-level code a second time.
"""

import atexit
import collections
import contextlib
import io
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["ENVIRONMENT", "Sketch", "paint", "render", "start", "warm_up"]

# PNG resolution, as MLflow's log_figure saved the figures before they moved to the helper.
_DPI = 100
_HEADER = 8  # bytes of the length that precedes each pickled message
_READY = "ready"  # the helper's first message, once it has imported and drawn a first figure
# "0" draws every figure in the run's process (a machine without a core to spare).
ENVIRONMENT = "MLX_FIGURE_HELPER"


class Sketch(NamedTuple):
    """A figure to draw: ``function(*args, **kwargs)`` returns a matplotlib Figure or None."""

    function: Callable[..., Any]
    args: tuple = ()
    kwargs: Mapping[str, Any] | None = None

    def draw(self):
        """The Figure, drawn in this process (None when the figure does not apply)."""
        return self.function(*self.args, **(self.kwargs or {}))


def render(sketch: Sketch) -> bytes | None:
    """The sketch drawn and encoded as PNG, or None when it draws no figure.

    Drawn in matplotlib's default style, whatever the process's settings: Optuna's plots switch
    pyplot to its ggplot style for good, which would restyle every later figure of the process.
    """
    _PAINTER.warmed()
    import matplotlib.style

    with matplotlib.style.context("default"):
        fig = sketch.draw()
        if fig is None:
            return None
        try:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=_DPI)
            return buffer.getvalue()
        finally:
            if fig.canvas.manager is not None:  # made through pyplot (Optuna's): release it
                import matplotlib.pyplot as plt

                plt.close(fig)


def _send(stream, data):
    """Write one pickled message, preceded by its length."""
    stream.write(len(data).to_bytes(_HEADER, "little") + data)
    stream.flush()


def _receive(stream):
    """The next message, or raises EOFError when the other side has gone."""
    header = stream.read(_HEADER)
    if len(header) < _HEADER:
        raise EOFError
    size = int.from_bytes(header, "little")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return data


def _serve():
    """The helper's loop: each sketch read from stdin answered on stdout as (ok, PNG or None)."""
    import warnings

    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a print in a figure function must not corrupt the answers
    warnings.simplefilter("ignore")  # figure warnings are no user's concern, and unseen here
    import matplotlib

    matplotlib.use("Agg")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the in-memory studies' notices
    _warm_up()
    _send(answers, pickle.dumps(_READY))
    while True:
        try:
            request = _receive(requests)
        except (EOFError, OSError):
            os._exit(0)  # the run has ended: nothing here needs tearing down
        try:
            answer = (True, render(pickle.loads(request)))
        except BaseException:  # drawn again by the run, which then raises it properly
            answer = (False, None)
        _send(answers, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


def _warm_up():
    """Import what the figures need and draw a first one: about a second, paid once."""
    import matplotlib.pyplot  # noqa: F401  (Optuna's plots)
    import optuna.importance  # noqa: F401  (the importance plot's forest: 0.1 s)
    import optuna.visualization.matplotlib  # noqa: F401
    import sklearn.metrics  # noqa: F401  (the Display classes)
    from matplotlib.figure import Figure

    # Fonts and the text layout engine load with the first figure drawn.
    warm = Figure(figsize=(1, 1))
    warm.subplots().set_title("mlx")
    warm.savefig(io.BytesIO(), format="png")


class _Helper:
    """One helper process: sketches written to its stdin, PNGs read back in the same order."""

    def __init__(self):
        env = dict(os.environ)
        # The helper imports this package from where this process did (a source checkout too).
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from mlx.painter import _serve; _serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            # Ctrl-C at the terminal is the run's to handle; the helper ends when its stdin does.
            start_new_session=True,
        )
        self.alive = True
        self.ready = threading.Event()
        self._pending: collections.deque[Future] = collections.deque()
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()
        threading.Thread(target=self._read, name="mlx-painter", daemon=True).start()

    def submit(self, sketch):
        """The future ``(ok, PNG or None)`` of the sketch, or None if it cannot go.

        A helper still starting (a busy machine, a run quicker than matplotlib's import) gets
        nothing: waiting for it could take longer than drawing here.
        """
        if not self.ready.is_set():
            return None
        try:
            request = pickle.dumps(sketch, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # a model class defined in a script, say: drawn here instead
            return None
        future: Future = Future()
        # Queued before it is written, so the answer finds it; written under another lock, so
        # that the reader can take answers while a large request is being written.
        with self._pending_lock:
            if not self.alive:
                return None
            self._pending.append(future)
        try:
            with self._write_lock:
                _send(self.process.stdin, request)
        except (OSError, ValueError):  # the helper died, or was closed meanwhile
            self._stop()
        return future

    def _read(self):
        try:
            if pickle.loads(_receive(self.process.stdout)) == _READY:
                self.ready.set()
        except (EOFError, OSError, pickle.UnpicklingError):
            pass
        while self.ready.is_set():
            try:
                answer = pickle.loads(_receive(self.process.stdout))
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            with self._pending_lock:
                future = self._pending.popleft()
            future.set_result(answer)
        self._stop()

    def _stop(self):
        """No helper any more: what was sent to it is drawn by the run."""
        with self._pending_lock:
            self.alive = False
            pending, self._pending = self._pending, collections.deque()
        for future in pending:
            if not future.done():
                future.set_result((False, None))

    def close(self):
        """End the helper: it exits as soon as its stdin closes, or is killed mid-figure.

        Waited for, so that its CPU time counts among this process's children's. Nothing is
        submitted to it afterwards, even before its reader sees the end of its output.
        """
        self._stop()
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:  # still drawing for a run that has ended
            self.process.kill()
            self.process.wait()


class _Painter:
    """The helper of this process: started once, replaced if it died."""

    def __init__(self):
        self._helper: _Helper | None = None
        self._lock = threading.Lock()
        self._warming: threading.Thread | None = None

    def start(self):
        with self._lock:
            helper = self._helper
            if helper is None or not helper.alive or helper.process.poll() is not None:
                self._helper = _Helper()

    def submit(self, sketch):
        with self._lock:
            helper = self._helper
        return None if helper is None else helper.submit(sketch)

    def warm_up(self):
        with self._lock:
            helper = self._helper
            if self._warming is None and (helper is None or not helper.alive):
                self._warming = threading.Thread(
                    target=_quietly(_warm_up), name="mlx-warm-up", daemon=True
                )
                self._warming.start()

    def warmed(self):
        """Wait for the warm-up under way, if any: matplotlib is not for two threads at once."""
        warming = self._warming
        if warming is not None:
            warming.join()

    def close(self):
        with self._lock:
            if self._helper is not None:
                self._helper.close()


_PAINTER = _Painter()
atexit.register(_PAINTER.close)


def start() -> None:
    """Start the helper process, unless it runs already or ``MLX_FIGURE_HELPER=0``."""
    if os.environ.get(ENVIRONMENT, "").strip().lower() in ("0", "false", "no"):
        return
    _PAINTER.start()


def warm_up() -> None:
    """Import what drawing in this process needs, on a thread, unless a helper draws.

    For a process without a helper, once its own trials are over: the import, due before its
    first figure anyway, is then paid while it waits for its workers' last trials and refits
    (mostly BLAS, out of the GIL). A figure drawn here waits for it to end; a warm-up that
    fails leaves the import, and the error, to the first figure.
    """
    _PAINTER.warm_up()


def _quietly(func):
    def call():
        with contextlib.suppress(Exception):
            func()

    return call


def paint(sketches: Mapping[str, Sketch]) -> Iterator[tuple[str, bytes]]:
    """``(name, PNG bytes)`` of each sketch that draws a figure, in the order given.

    Every sketch is handed to the helper now, so they are drawn while the caller does other
    work (logging the earlier ones); one that came while the helper was still starting is
    handed to it when collected, if it is ready then. Without a helper (:func:`start` not
    called, or it died), or where it failed, a sketch is drawn in this process.
    """
    pending = [(name, sketch, _PAINTER.submit(sketch)) for name, sketch in sketches.items()]
    return _collected(pending)


def _collected(pending):
    for name, sketch, future in pending:
        if future is None:  # the helper was still starting when the sketch came: is it ready?
            # (Drawn here, the figure would cost this process matplotlib's import first.)
            future = _PAINTER.submit(sketch)
        ok, png = (False, None) if future is None else future.result()
        if not ok:
            png = render(sketch)
        if png is not None:
            yield name, png
