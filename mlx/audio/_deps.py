"""The optional audio libraries (soundfile, librosa), imported on first use."""

import importlib

__all__ = ["require"]

_INSTALL_HINT = 'pip install "mlx-experiments[audio]"'


def require(name):
    """Import soundfile or librosa, or say which extra provides it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"{name} is needed for mlx.audio's file and feature functions but could not be "
            f"imported ({exc}); install the audio extra: {_INSTALL_HINT}"
        ) from exc
