"""The console's Objects port in `kbroker run`: the config folder, as the console sees and edits it.

Reads are what `GET /status` shows (`status_api.snapshot`), so the console and `kbroker get`
never disagree. Validation is the controller's own: the candidate object is compiled together with
everything else in the folder (so a Trigger naming a Broker that does not exist, or changing an
immutable field, is refused exactly as the watcher would refuse it), and its problems are returned.

Writes go to one console-owned file per object, `ui.<namespace>.<name>.<kind>.yaml`, written
atomically (a temporary file in the same folder, fsync, rename, fsync of the folder): the folder
watcher sees either the old file or the new one, never half of one. An object that comes from any
other file was written by a person, maybe with comments or beside other documents: the console
shows it read-only with its path and never rewrites it.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml

from kbroker import status_api
from kbroker.controller import compiler
from kbroker.core.contract import Contract
from kbroker.ui.ports import KObject, Origin
from kbroker.ui.yamlview import to_yaml, written

_SUFFIXES = (".yaml", ".yml")
_LISTS = {
    "Broker": "brokers",
    "Trigger": "triggers",
    "EventPolicy": "eventpolicies",
    "PingSource": "pingsources",
}
EDITABLE_KINDS = ("Trigger",)
LOAD_WAIT = 3.0  # seconds apply() waits for the folder watcher (it polls every half second)


class _Folder(Protocol):
    @property
    def config_dir(self) -> Path: ...

    @property
    def env(self) -> compiler.Environment: ...


class Source(status_api.StatusSource, Protocol):
    """What `kbroker run` (standalone.Standalone) offers this port."""

    @property
    def folder(self) -> Any: ...


def ui_file_name(kind: str, namespace: str, name: str) -> str:
    return f"ui.{namespace}.{name}.{kind.lower()}.yaml"


def _key(doc: Any) -> tuple[str, str, str] | None:
    if not isinstance(doc, Mapping):
        return None
    meta = doc.get("metadata")
    if not isinstance(meta, Mapping) or not meta.get("name") or not doc.get("kind"):
        return None
    return (str(doc["kind"]), str(meta.get("namespace") or "default"), str(meta["name"]))


class StandaloneObjects:
    def __init__(self, src: Source) -> None:
        self.src = src
        self._docs: dict[Path, tuple[tuple[int, int, int], tuple[Any, ...]]] = {}

    @property
    def config_dir(self) -> Path:
        return Path(self.src.folder.config_dir)

    def contract(self) -> Contract:
        return self.src.holder.current

    async def list(self, kind: str, namespace: str | None = None) -> list[KObject]:
        doc = await status_api.snapshot(self.src)
        items: list[KObject] = list(doc.get(_LISTS.get(kind, ""), []))
        if namespace is not None:
            items = [o for o in items if o.get("metadata", {}).get("namespace") == namespace]
        return items

    async def get(self, kind: str, namespace: str, name: str) -> KObject | None:
        for obj in await self.list(kind, namespace):
            if obj.get("metadata", {}).get("name") == name:
                return obj
        return None

    # -- where objects come from ---------------------------------------------------------------

    def _read_folder(self) -> dict[Path, tuple[Any, ...]]:
        """Every document of every YAML file in the folder (cached by mtime/size/inode)."""
        out: dict[Path, tuple[Any, ...]] = {}
        try:
            paths = sorted(p for p in self.config_dir.iterdir() if p.suffix in _SUFFIXES)
        except OSError:
            return out
        for p in paths:
            try:
                st = p.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            cached = self._docs.get(p)
            if cached is not None and cached[0] == stamp:
                out[p] = cached[1]
                continue
            try:
                docs = tuple(d for d in yaml.safe_load_all(p.read_text()) if d is not None)
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                docs = ()
            self._docs[p] = (stamp, docs)
            out[p] = docs
        return out

    def _source_of(self, key: tuple[str, str, str]) -> Path | None:
        for path, docs in self._read_folder().items():
            if any(_key(d) == key for d in docs):
                return path
        return None

    def origin(self, obj: KObject) -> Origin:
        key = _key(obj)
        if key is None:
            return Origin(False, reason="not an object the console knows")
        path = self._source_of(key)
        if key[0] not in EDITABLE_KINDS:
            return Origin(False, str(path or ""), f"the console edits Triggers only, not {key[0]}s")
        if path is None or path.name == ui_file_name(*key):
            return Origin(True, str(path or self.config_dir / ui_file_name(*key)))
        return Origin(
            False,
            str(path),
            f"written by hand in {path.name}: edit that file (the console never rewrites it)",
        )

    # -- validation and writes -----------------------------------------------------------------

    def validate(self, obj: KObject) -> builtins.list[str]:
        key = _key(obj)
        if key is None:
            return ["metadata.name: required"]
        target = str(self.config_dir / ui_file_name(*key))
        objects: list[compiler.SourcedObject] = []
        before: Mapping[str, Any] | None = None
        for path, docs in self._read_folder().items():
            for d in docs:
                if _key(d) == key:
                    before = d
                    continue  # replaced by the candidate
                objects.append(compiler.SourcedObject(d, str(path)))
        candidate = written(obj)
        objects.append(compiler.SourcedObject(candidate, target))
        errors: list[str] = []
        env = self.src.folder.env
        if before is not None:
            errors += compiler.validate_update(
                before, candidate, defaults=env.defaults, default_class=env.default_broker_class
            )
        result = compiler.compile(objects, env)
        for p in result.problems:
            if (p.kind, p.namespace, p.name) == key and p.severity == "error":
                errors.append(f"{p.field}: {p.reason}" if p.field else p.reason)
        return errors

    async def apply(self, obj: KObject) -> KObject:
        key = _key(obj)
        if key is None or key[0] not in EDITABLE_KINDS:
            raise PermissionError("the console writes Triggers only")
        origin = self.origin(obj)
        if not origin.editable:
            raise PermissionError(origin.reason)
        errors = self.validate(obj)
        if errors:
            raise ValueError("; ".join(errors))
        doc = written(obj)
        doc.setdefault("metadata", {})["namespace"] = key[1]
        path = self.config_dir / ui_file_name(*key)
        await asyncio.to_thread(write_atomically, path, to_yaml(doc).encode())
        await self._until_loaded(key, doc)
        return doc

    async def _until_loaded(self, key: tuple[str, str, str], doc: KObject) -> None:
        """Wait (bounded) until the folder watcher has loaded what was just written, so the page
        the user is sent to next shows the new object, not "not found" or the old spec."""
        deadline = time.monotonic() + LOAD_WAIT
        while time.monotonic() < deadline:
            result = getattr(self.src, "result", None)  # None: nothing loaded, nothing to wait on
            if result is None:
                return
            loaded = result.objects.get(key)
            if loaded is not None and loaded.get("spec") == doc.get("spec"):
                return
            await asyncio.sleep(0.05)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        origin = self.origin({"kind": kind, "metadata": {"namespace": namespace, "name": name}})
        if not origin.editable:
            raise PermissionError(origin.reason)
        path = self.config_dir / ui_file_name(kind, namespace, name)
        await asyncio.to_thread(path.unlink, True)


def write_atomically(path: Path, data: bytes) -> None:
    """Write `path` so that readers see the old content or the new, never a mix: a temporary
    file in the same folder (hidden, and not *.yaml, so the watcher ignores it), fsync, rename,
    then fsync the folder so the rename itself survives a crash."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
