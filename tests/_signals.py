"""Signals for the `mlx` processes the tests start."""

import signal


def default_sigint():
    """Ctrl-C as in a terminal, for a child process (``preexec_fn``).

    When the tests run as a background job (``pytest &``, a CI runner without a terminal), its
    children inherit an ignored SIGINT and Python then installs no KeyboardInterrupt handler: a
    test that sends SIGINT would wait for a process that never hears it.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
