"""``python -m mlx``: the ``mlx`` command (how the runner starts local worker processes)."""

from mlx.cli import main

if __name__ == "__main__":
    main()
