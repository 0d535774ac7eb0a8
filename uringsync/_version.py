"""The version, defined here only: pyproject.toml reads it, ``uringsync --version`` prints it."""

__version__ = "0.1.0"
