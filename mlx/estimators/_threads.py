"""The one BLAS thread controller of the estimators.

Narrow products (k-means' k rows, a small network's batch, a chunk of kNN queries) gain little
from a second BLAS thread, and its spinning stalls the OpenMP and BLAS pools of whatever else
runs (scikit-learn's kernels slowed several times beside a 2-thread BLAS): such loops pin BLAS
to one thread. Creating a ``ThreadpoolController`` inspects the loaded libraries (tens of
milliseconds), entering its ``limit`` afterwards costs microseconds, so one is created per
process, on first use.
"""

import functools
import threading

from threadpoolctl import ThreadpoolController

__all__ = ["single_threaded_blas"]

_lock = threading.Lock()


@functools.cache
def _controller():
    return ThreadpoolController()


def single_threaded_blas():
    """A context manager that limits BLAS to one thread in this process while it is entered."""
    # Threads of kNN's query loop call this at once: the controller must be created only once.
    with _lock:
        controller = _controller()
    return controller.limit(limits=1, user_api="blas")
