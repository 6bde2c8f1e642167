"""Where child-run writes happen: at once in the caller, or in order on a background thread.

Against a tracking server (``http(s)://``) each store write is a blocking HTTP round trip,
about 25-35 ms; a trial makes three (create its run, log its values, end it). Their results
are not needed by the search, only their run id by the later writes of the same trial, so a
single background thread makes them in the order they were queued (one queue: a run's writes
never overtake each other). Local stores keep the writes in the caller: there they are
CPU-bound ORM work that a thread would only make compete with the trials for the GIL.

MLflow's own asynchronous logging (``log_batch(..., synchronous=False)``) covers ``log_batch``
only: run creation and a run's end stay blocking calls, two of the three.
"""

import os
import queue
import threading
import time

from mlx.exceptions import TrackingError

__all__ = ["Background", "Inline", "background_wanted"]

# Writes queued at most before a trial waits for the thread (backpressure on a slow server).
_MAX_QUEUED = 256
# Seconds the thread waits for work before it ends (the next write starts another).
_IDLE_SECONDS = 5.0
# Seconds a stopping process waits for its queued writes (a server that hangs must not hang it).
_DRAIN_SECONDS = 120.0
# Environment variable that turns background writes on (1) or off (0) whatever the store.
ENVIRONMENT = "MLX_BACKGROUND_TRACKING"


def background_wanted(uri):
    """Whether the child runs of the store ``uri`` are written in the background.

    Yes for a tracking server, no for a local or database store; ``MLX_BACKGROUND_TRACKING``
    (``0`` or ``1``) decides instead when set.
    """
    forced = os.environ.get(ENVIRONMENT, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return uri.lower().startswith(("http://", "https://"))


class Inline:
    """Writes made at once, in the caller; a failure raises there."""

    background = False

    def submit(self, key, task, what):  # noqa: ARG002 (same call as Background.submit)
        task()

    def check(self):
        pass

    def flush(self):
        pass

    def drain(self):
        pass

    def hold(self, seconds):
        pass

    def release(self):
        pass


class Background:
    """Writes made in order by one daemon thread; a failure raises at the next check or flush.

    The thread starts with the first write and ends when idle for a few seconds (a notebook
    that runs many searches keeps no thread per search).

    Each write belongs to a ``key`` (one trial's run); after a write of a key failed, the later
    writes of that key are skipped (a run whose creation failed has no id, one whose values
    were not logged must not end as if it had finished well).
    """

    background = True

    def __init__(self):
        self._queue = queue.Queue(maxsize=_MAX_QUEUED)
        self._done = threading.Condition()
        self._pending = 0
        self._error = None
        self._failed = set()
        self._thread = None
        self._held_until = 0.0

    def submit(self, key, task, what):
        """Queue ``task()``; ``what`` names it in the error if it fails."""
        with self._done:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="mlx-tracking-writes", daemon=True
                )
                self._thread.start()
        self._queue.put((key, task, what))

    def flush(self):
        """Wait until every queued write is made; raise a :class:`TrackingError` if one failed."""
        self.drain()
        self.check()

    def hold(self, seconds):
        """Start no queued write for ``seconds``, or until :meth:`release`.

        Between two fits the process tells the study, claims and samples the next trial:
        Python work and database round trips that the thread's HTTP calls (and the server
        answering them on the same machine) would slow. Held, the writes wait for the next
        trial's fit, which spends its time in numpy and so leaves the interpreter to them.
        """
        with self._done:
            self._held_until = time.monotonic() + seconds

    def release(self):
        """Let the queued writes go (see :meth:`hold`)."""
        with self._done:
            self._held_until = 0.0
            self._done.notify_all()

    def drain(self):
        """Wait (up to two minutes) until every queued write is made, without raising."""
        self.release()
        deadline = time.monotonic() + _DRAIN_SECONDS
        with self._done:
            self._done.wait_for(lambda: self._pending == 0, deadline - time.monotonic())

    def check(self):
        """Raise the :class:`TrackingError` of a write that failed since the last check."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self):
        while True:
            try:
                key, task, what = self._queue.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._done:
                    if self._pending == 0:  # no write queued or being queued: end
                        self._thread = None
                        return
                continue
            with self._done:
                while (held := self._held_until - time.monotonic()) > 0:
                    self._done.wait(held)
            try:
                if key not in self._failed:
                    task()
            except Exception as exc:
                self._failed.add(key)
                if self._error is None:
                    # Raised later in the main thread: one line saying what was not recorded.
                    self._error = TrackingError(f"{what} failed: {exc}")
            finally:
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()
