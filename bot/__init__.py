"""Baton: the platform-free support brain and its runtime."""

__version__ = "0.1.0"
