"""Our numpy estimators against scikit-learn's, on the same data in one run.

Usage: ``python bench/estimators.py [substring ...]`` (only the cases whose name contains one
of the substrings). Prints a Markdown table: median fit+predict time of ours and of
scikit-learn's counterpart, their ratio (below 1.0 means we are faster) and the quality of each.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import HEADER, Case, format_row, measure  # noqa: E402

CASES = {}


def case(fn):
    """Register a function that builds the data and returns one or more :class:`Case`."""
    CASES[fn.__name__] = fn
    return fn


# --- k-means -------------------------------------------------------------------------------


# --- nearest neighbours --------------------------------------------------------------------


# --- linear regression ---------------------------------------------------------------------


# --- multi-layer perceptrons ---------------------------------------------------------------


def main(argv):
    wanted = argv[1:]
    print(HEADER, flush=True)
    for builder in CASES.values():
        built = builder()
        for c in built if isinstance(built, list) else [built]:
            if not wanted or any(w in c.name for w in wanted):
                print(format_row(measure(c)), flush=True)


if __name__ == "__main__":
    main(sys.argv)
