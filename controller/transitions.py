"""When each Broker/Trigger condition last changed, remembered across reads and restarts.

Kubernetes keeps `lastTransitionTime` in the object's stored status, and the cluster controller
reads it back from there (`status.ObjectStatus.to_k8s(previous=...)`). A folder of YAML has no
stored status, so the standalone broker keeps one itself: per object and condition type, the
status last seen and when it became so. `observe` is called with every new set of statuses (after
each compile); a condition whose status differs from the remembered one, or that is new, is
stamped with the current time; everything else keeps its time.

Why a file of its own rather than something derived: nothing durable records when a condition
changed. A file's mtime says when *it* changed, but a Trigger's SubscriberResolved flips when
another file (the Broker it points at) goes away, and a storage failure is in no file at all. So
the transitions themselves are written to one small JSON file in the data folder, only when one
happened, by write-then-rename so a crash leaves the old file or the new one, never half of one.
It is not fsynced: losing the last write (power loss) only makes a later time show, and an
unreadable file only makes times restart from now; neither loses anything else.

What this module refuses: deciding conditions (it only times them), and keeping objects that are
gone: a deleted and re-created object starts with fresh times, as in Kubernetes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from kbroker.controller import status
from kbroker.controller.compilation import Key

log = logging.getLogger(__name__)

_VERSION = 1


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ConditionTimes:
    def __init__(self, path: Path | None, now: Callable[[], datetime] = _utc_now) -> None:
        """`path` None keeps times in memory only (a process that must not write files)."""
        self.path = path
        self.now = now
        # "kind/namespace/name" -> condition type -> (status, lastTransitionTime)
        self._seen: dict[str, dict[str, tuple[str, str]]] = self._load()

    def observe(self, statuses: Mapping[Key, status.ObjectStatus]) -> None:
        """Record the conditions of every object there is now; forget the objects that are gone."""
        stamp = status.rfc3339(self.now())
        seen: dict[str, dict[str, tuple[str, str]]] = {}
        for key, st in statuses.items():
            before = self._seen.get(_name(key), {})
            seen[_name(key)] = {
                c.type: before[c.type]
                if c.type in before and before[c.type][0] == c.status
                else (c.status, stamp)
                for c in st.conditions
            }
        if seen != self._seen:
            self._seen = seen
            self._save()

    def previous(self, key: Key) -> dict[str, Any]:
        """The object's remembered conditions, shaped as the `previous` status `to_k8s` takes."""
        return {
            "conditions": [
                {"type": t, "status": s, "lastTransitionTime": at}
                for t, (s, at) in sorted(self._seen.get(_name(key), {}).items())
            ]
        }

    def _load(self) -> dict[str, dict[str, tuple[str, str]]]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            doc = orjson.loads(self.path.read_bytes())
            objects = doc["objects"] if doc.get("version") == _VERSION else {}
            return {
                str(name): {str(t): (str(s), str(at)) for t, (s, at) in conds.items()}
                for name, conds in objects.items()
            }
        except (OSError, orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            log.warning("%s is unreadable: condition times start from now", self.path)
            return {}

    def _save(self) -> None:
        if self.path is None:
            return
        doc = {"version": _VERSION, "objects": self._seen}
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
            os.replace(tmp, self.path)
        except OSError as exc:
            # Status times are not worth failing a reconcile for; they stay right in memory.
            log.warning("cannot write %s: %s", self.path, exc)


def _name(key: Key) -> str:
    return "/".join(key)
