"""Durable state: homenets created or changed at run time, and every homenet's policy."""
from msp_controller.store.base import Store, StoredState
from msp_controller.store.sqlite import MemoryStore, SqliteStore

__all__ = ["MemoryStore", "SqliteStore", "Store", "StoredState"]
