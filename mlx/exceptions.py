"""The package's exceptions: one base class, one subclass per kind of problem.

Each class carries the exit code the command line uses for it, so ``mlx`` maps any of them to a
one-line message and that code without knowing the details.
"""

__all__ = [
    "AlreadyRunningError",
    "DataError",
    "ExperimentError",
    "Interrupted",
    "MlxError",
    "SearchError",
    "TestReuseError",
    "TrackingError",
    "first_line",
    "plural",
]


class MlxError(Exception):
    """Base class of every error ``mlx`` raises on purpose."""

    exit_code = 1


class ExperimentError(MlxError, ValueError):
    """The experiment file or definition is invalid (found before any work is done)."""

    exit_code = 2


class DataError(MlxError, ValueError):
    """The data cannot be used: wrong shapes, NaN labels, too few rows for the split."""

    exit_code = 2


class TestReuseError(MlxError):
    """The test split was already evaluated and reuse was not allowed."""

    # pytest collects classes named Test*; this one is not a test.
    __test__ = False
    exit_code = 3


class SearchError(MlxError):
    """The search produced nothing usable (for example every trial failed)."""

    exit_code = 1


class TrackingError(MlxError):
    """The tracking store could not be used."""

    exit_code = 1


class AlreadyRunningError(MlxError):
    """Another coordinator runs the same experiment (same definition) right now."""

    exit_code = 1


class Interrupted(KeyboardInterrupt):
    """A run stopped from outside: Ctrl-C (SIGINT) or SIGTERM.

    A ``KeyboardInterrupt``, so that every place that ends a trial or a run on Ctrl-C ends it
    the same way on SIGTERM. Its message says what is kept and how to continue; ``exit_code``
    is the shell's convention (128 + the signal's number).
    """

    def __init__(self, message="interrupted", signum=2):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self):
        return 128 + self.signum


def plural(count, word, words=None):
    """``"1 row"``, ``"2 rows"``: ``count`` and the word in the number it takes."""
    return f"{count} {word if count == 1 else words or word + 's'}"


def first_line(exc):
    """The first line of an exception's message (its type's name when it has none).

    Drivers and libraries put pages under one exception; messages shown to users take a line.
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
