"""The three filesystem calls the folder watcher makes, behind a Protocol.

Why a seam: the watcher's promise is about what happens when the folder cannot be read (too many
open files, permission denied), and those conditions are hard to cause for real in a test that
runs as root (root reads through `chmod 000`). A `Filesystem` that raises on demand lets tests
cause them exactly; `LocalFilesystem` is what runs. Nothing here caches, retries or interprets an
error: deciding what an error means is the watcher's job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class Filesystem(Protocol):
    def list(self, folder: Path) -> list[Path]:
        """The entries directly in `folder`; raises OSError when it cannot be listed."""
        ...

    def stat(self, path: Path) -> os.stat_result: ...

    def read(self, path: Path) -> str:
        """The file's text (UTF-8)."""
        ...


class LocalFilesystem:
    def list(self, folder: Path) -> list[Path]:
        return list(folder.iterdir())

    def stat(self, path: Path) -> os.stat_result:
        return path.stat()

    def read(self, path: Path) -> str:
        return path.read_text("utf-8")
