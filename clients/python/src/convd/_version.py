"""The package version (kept with the daemon's: convd 0.1.0)."""

__version__ = "0.1.0"
