"""Durable state: homenets created or changed at run time, and every homenet's policy."""
from .base import Store, StoredState
from .sqlite import MemoryStore, SqliteStore

__all__ = ["MemoryStore", "SqliteStore", "Store", "StoredState"]
