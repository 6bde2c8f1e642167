"""Heartbeats of running trials, so that a trial whose process died is found and replaced.

Optuna's RDB storage keeps a heartbeat per running trial when it is given a
``heartbeat_interval``; a trial silent for the grace period is failed by
``optuna.storages.fail_stale_trials`` (see :func:`mlx.search.slots.fail_lost`). Optuna records
heartbeats only inside its own ``study.optimize``; mlx runs trials from claimed slots, so it
records them itself, from a thread, while a trial runs.
"""

import logging
import threading

from mlx.exceptions import first_line

__all__ = ["Heartbeat", "heartbeat_interval"]

logger = logging.getLogger(__name__)


def heartbeat_interval(storage):
    """Seconds between heartbeats of ``storage``, or None for a storage without heartbeat."""
    get = getattr(storage, "get_heartbeat_interval", None)
    return get() if callable(get) else None


class Heartbeat:
    """Records a running trial's heartbeat every ``heartbeat_interval`` seconds, in a thread.

    Does nothing on a storage without heartbeat.
    """

    def __init__(self, storage, trial_id):
        self.storage = storage
        self.trial_id = trial_id
        self.interval = heartbeat_interval(storage)
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        if self.interval:
            self._beat()
            self._thread = threading.Thread(target=self._run, name="mlx-heartbeat", daemon=True)
            self._thread.start()
        return self

    def _beat(self):
        try:
            self.storage.record_heartbeat(self.trial_id)
        except Exception as exc:  # a missed beat is retried at the next interval
            logger.warning("heartbeat of a trial not recorded: %s", first_line(exc))

    def _run(self):
        while not self._stop.wait(self.interval):
            self._beat()

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
