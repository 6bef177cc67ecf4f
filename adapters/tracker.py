"""What an adapter has finished working on (kept here for the adapters' imports)."""

from bot.inbox import Tracker

__all__ = ["Tracker"]
