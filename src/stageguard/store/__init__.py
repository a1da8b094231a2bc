"""Stage stores: where central stages and their versions live."""

from ._open import open_store
from .base import StageStore
from .sqlite import SQLiteStageStore, default_db_path

__all__ = ["SQLiteStageStore", "StageStore", "default_db_path", "open_store"]
