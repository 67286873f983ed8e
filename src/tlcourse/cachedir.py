"""What the cache folder holds (``python -m tlcourse cache``): its kinds, their sizes, and clearing them."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

# kind -> (words, folder names under the cache folder; a name ending in "*" is a prefix)
KINDS = {
    "arrays": ("decoded CIFAR-10 arrays", ("arrays",)),
    "photos": ("decoded and demo photos", ("photos", "demo-photos-*")),
    "features": ("cached features", ("features",)),
    "engines": ("exported engines", ("engines",)),
    "downloads": ("downloaded data sets", ("data",)),
    "other": ("anything else", ()),
}


@dataclass
class CacheKind:
    """One kind of cached thing: its entries (top-level files and folders) and their bytes on disk."""

    kind: str
    entries: list[Path]
    bytes: int

    @property
    def words(self) -> str:
        return KINDS[self.kind][0]


def kind_of(name: str) -> str:
    """The kind a top-level entry of the cache folder belongs to."""
    for kind, (_, names) in KINDS.items():
        if any(name == n or (n.endswith("*") and name.startswith(n[:-1])) for n in names):
            return kind
    return "other"


def disk_bytes(path: Path) -> int:
    """Bytes of ``path`` and everything under it; a symbolic link counts as a link, never followed."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size if path.is_symlink() or path.exists() else 0
    total = 0
    for root, _, files in os.walk(path):  # os.walk does not descend into linked folders
        total += sum((Path(root) / f).lstat().st_size for f in files)
    return total


def summarize_cache(folder: str | Path) -> list[CacheKind]:
    """Every kind (in :data:`KINDS` order) with what the cache folder holds of it."""
    folder = Path(folder)
    found: dict[str, list[Path]] = {kind: [] for kind in KINDS}
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            found[kind_of(entry.name)].append(entry)
    return [CacheKind(kind, entries, sum(disk_bytes(e) for e in entries)) for kind, entries in found.items()]


def clear_cache(folder: str | Path, kinds: list[str] | None = None) -> list[CacheKind]:
    """Remove the given kinds (default: all but ``other``, as the folder may be shared); returns what went.

    A symbolic link is removed as a link: what it points to stays.
    """
    kinds = kinds or [k for k in KINDS if k != "other"]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown cache kind(s) {sorted(unknown)}; known: {', '.join(KINDS)}")
    removed = [c for c in summarize_cache(folder) if c.kind in kinds and c.entries]
    for c in removed:
        for entry in c.entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
    return removed


def format_bytes(n: int) -> str:
    """``0 B``, ``12.3 kB``, ``4.8 MB``, ``1.2 GB`` (powers of 1000)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
