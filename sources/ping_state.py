"""The last tick each PingSource fired, one small file per source, written before the send.

Recording a tick before its event goes out is what makes a restart neither repeat it nor (unless
asked) replay the ticks it missed: after a crash between the record and the send the tick is lost,
never doubled, exactly as Knative's mt-ping loses a tick it was down for.

What this module refuses: deciding which ticks are due (sources/ping) and sending anything.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import orjson


class TickRecord:
    """`<dir>/<namespace>_<name>.json` = {"uid", "last"}; atomic replace, fsynced."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, namespace: str, name: str) -> Path:
        return self.directory / f"{namespace}_{name}.json"

    def load(self, namespace: str, name: str, uid: str) -> dt.datetime | None:
        """The last recorded tick of this object (None if none, or if it was another object of
        the same name that was deleted and re-created)."""
        try:
            doc = orjson.loads(self._path(namespace, name).read_bytes())
            if doc.get("uid") != uid:
                return None
            return dt.datetime.fromisoformat(doc["last"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, namespace: str, name: str, uid: str, tick: dt.datetime) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(namespace, name)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(orjson.dumps({"uid": uid, "last": tick.isoformat()}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def forget(self, namespace: str, name: str) -> None:
        self._path(namespace, name).unlink(missing_ok=True)
