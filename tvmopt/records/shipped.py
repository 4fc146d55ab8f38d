"""The data that ships inside the package: tuning records (``logs/records``) and replay tables
(``logs/replay``).

The repository's ``logs/`` folder is installed as the package ``tvmopt.logs`` (pyproject's
``package-dir``), and only its records and replay tables travel as package data (the comparison
and search logs that BENCHMARKS.md cites stay in the repository). They are found through
``importlib.resources``, so an ordinary ``pip install .`` and an editable install find the same
files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE = "tvmopt.logs"


def _root() -> Path | None:
    try:
        root = resources.files(PACKAGE)
    except ModuleNotFoundError:
        return None
    path = Path(str(root))
    return path if path.is_dir() else None


def records_dir() -> Path | None:
    """The directory of the shipped records (one ``<target key>.jsonl`` per target), or None."""
    root = _root()
    return root / "records" if root is not None and (root / "records").is_dir() else None


def replay_tables() -> dict[str, Path]:
    """Shipped replay tables by file name (``gemm_256x256x256_llvm-znver5-2c.json``)."""
    root = _root()
    folder = root / "replay" if root is not None else None
    if folder is None or not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.glob("*.json"))}


def replay_table(name: str) -> Path:
    """``name`` as given when it is a file; otherwise the shipped table of that file name (with or
    without ``.json`` or a leading ``logs/replay/``), so ``tvmopt compare --replay`` works from any
    directory; otherwise ``name`` unchanged (the caller reports it missing)."""
    path = Path(name)
    if path.exists():
        return path
    tables = replay_tables()
    for candidate in (path.name, path.name + ".json"):
        if candidate in tables:
            return tables[candidate]
    return path
