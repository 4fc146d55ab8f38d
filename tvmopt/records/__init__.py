"""Stage 6, records: the append-only, locked record cache (``store``) and the records and
replay tables shipped inside the package (``shipped``)."""

from .store import DEFAULT_DIR, Record, RecordCache, pick_best

__all__ = ["DEFAULT_DIR", "Record", "RecordCache", "pick_best"]
