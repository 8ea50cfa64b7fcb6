"""The version of the distribution ``gochat-actors``: written here and nowhere else (the
build reads it from this file; CHANGELOG.md's newest entry names it)."""

__version__ = "0.1.0"
