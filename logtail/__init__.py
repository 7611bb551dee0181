"""logtail: tail and follow log files over Server-Sent Events."""

__all__ = ["__version__"]
__version__ = "0.1.0"
