"""The run's container: `python -m runner --run-id N` plays one session to its end."""

from core import __version__

__all__ = ["__version__"]
