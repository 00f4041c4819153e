"""Standalone source of objects: a folder of Knative YAML, watched by polling.

`kbroker run --config DIR` points here. Every `*.yaml` / `*.yml` file directly in the folder
(not in subfolders, like `kubectl apply -f DIR`) may hold several documents; each change of a
file's size or mtime recompiles everything and hands the result to `on_update`. Polling keeps
us free of a file-notification dependency and works the same on every platform and on network
or ConfigMap-mounted volumes, where inotify is unreliable.

Standing in for the Kubernetes API server, it also does what the API server and webhook would:
- an update that changes an immutable field (Trigger `spec.broker`, Broker class, `spec.config`)
  is refused: the previously accepted version stays in force and a problem is reported;
- `metadata.generation` starts at 1 and goes up when an object's spec changes, so
  `observedGeneration` means what it means in Kubernetes;
- a file that stops parsing keeps its last good objects (a typo mid-edit must not delete a
  Broker), and the parse error is reported against the file.

A folder that cannot be listed (too many open files, permission denied, renamed away for a moment)
is not an empty folder: deleting a Broker deletes its stored events, so the last configuration that
was read completely stays in force until the folder can be read again. A file that exists but
cannot be read keeps its last objects the same way; only a file that is really gone takes its
objects with it. Either condition is logged once when it starts and once when it ends, and is
reported by `health` (the wiring shows it in /status and /readyz).

What this module refuses: recursion into subfolders, and writing anything back to the folder.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import yaml
from kbroker.controller import compiler, readiness
from kbroker.controller.folder_fs import Filesystem, LocalFilesystem
from kbroker.core import contract

log = logging.getLogger(__name__)

OnUpdate = Callable[[compiler.CompileResult], Awaitable[None] | None]
_SUFFIXES = (".yaml", ".yml")
_CHECKED_KINDS = {  # apiVersion group -> kinds whose immutable fields and generation we keep
    "eventing.knative.dev": ("Broker", "Trigger"),
    "messaging.knative.dev": (
        "Channel",
        "InMemoryChannel",
        "KafkaChannel",
        "NatsJetStreamChannel",
        "Subscription",
    ),
    "flows.knative.dev": ("Sequence", "Parallel"),
}


Stamp = tuple[int, int, int]  # (mtime_ns, size, inode)


@dataclass(frozen=True, slots=True)
class _File:
    stamp: Stamp  # when read
    docs: tuple[Any, ...]  # last documents that parsed (kept when the file stops parsing)
    error: str | None = None
    unreadable: bool = False  # an OS error, not bad content: read it again on the next poll


@dataclass(frozen=True, slots=True)
class Health:
    """Whether the last scan could see the whole folder. `errors` (one line each: the folder, or
    a file) is empty when it could; `since` is when the current episode started (epoch seconds)."""

    errors: tuple[str, ...] = ()
    since: float | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


class _Unlistable(Exception):
    """The folder itself could not be listed; the message says why, on one line."""


class FolderSource:
    def __init__(
        self,
        config_dir: Path,
        env: compiler.Environment,
        on_update: OnUpdate,
        poll_interval: float = 0.5,
        fs: Filesystem | None = None,
    ) -> None:
        self.config_dir = Path(config_dir)
        self.env = env
        self.on_update = on_update
        self.poll_interval = poll_interval
        self.fs = fs or LocalFilesystem()
        self.latest: compiler.CompileResult | None = None
        self.health = Health()
        self._files: dict[Path, _File] = {}
        self._accepted: dict[compiler.Key, Mapping[str, Any]] = {}
        self._generations: dict[compiler.Key, tuple[bytes, int]] = {}
        self._stale = True  # recompile on the next successful scan even if no file changed
        self.readiness = readiness.ReadinessLog()

    async def run(self) -> None:
        """Load, then poll for changes until cancelled; `on_update` sees every new result."""
        while True:
            try:
                result = await asyncio.to_thread(self.refresh)
                if result is not None:
                    outcome = self.on_update(result)
                    if inspect.isawaitable(outcome):
                        await outcome
                    # After on_update: by then a Ready Trigger's worker exists, as /status says.
                    self.readiness.observe(readiness.from_compile(result))
            except Exception:
                # A watcher that dies leaves the broker serving a stale config with no sign of
                # it; one that logs and keeps polling recovers on the next edit.
                log.exception("config reload failed; will retry on the next change")
            await asyncio.sleep(self.poll_interval)

    def refresh(self) -> compiler.CompileResult | None:
        """Rescan the folder; recompile and return the result if anything changed, else None.

        While the folder cannot be listed this returns None (the last result stays in force),
        except on the very first scan, which has nothing to keep and reports the folder as a
        problem of an empty configuration."""
        try:
            stamps = self._scan()
        except _Unlistable as exc:
            self._set_health((f"{self.config_dir}: {exc}",), folder=True)
            if self.latest is not None:
                return None
            files: dict[Path, _File] = {}
            folder_problem: str | None = str(exc)
        else:
            files = {
                p: self._unreadable(p, s) if isinstance(s, str) else self._read(p, s)
                for p, s in stamps.items()
            }
            folder_problem = None
            self._set_health(
                tuple(f"{p}: {f.error}" for p, f in files.items() if f.unreadable), folder=False
            )
            unchanged = files.keys() == self._files.keys() and all(
                files[p] is self._files[p] for p in files
            )
            if unchanged and not self._stale and self.latest is not None:
                return None
        self._stale = folder_problem is not None
        result = self._compile(files, folder_problem)
        self.latest = result
        for p in result.problems:
            (log.warning if p.severity == "warning" else log.error)("%s", p)
        log.info(
            "config compiled",
            extra={
                "generation": result.contract.generation,
                "brokers": len(result.contract.brokers),
                "triggers": len(result.contract.triggers),
                "problems": len(result.problems),
            },
        )
        return result

    def _set_health(self, errors: tuple[str, ...], folder: bool) -> None:
        """Log an episode's start, a change of what fails, and its end; never every poll."""
        before = self.health
        if errors == before.errors:
            return
        if not errors:
            log.warning(
                "config folder %s readable again after %.1fs; resuming",
                self.config_dir,
                time.time() - (before.since or time.time()),
            )
            self.health = Health()
            return
        keeping = "the last good configuration" if folder else "their previous objects"
        log.error("config %s; keeping %s", "; ".join(errors), keeping)
        self.health = Health(errors, before.since or time.time())

    def _scan(self) -> dict[Path, Stamp | str]:
        """Every YAML file in the folder and its stamp, or why it cannot be stat'ed (such a file
        keeps its last objects); a file that is gone is left out."""
        try:
            entries = [p for p in self.fs.list(self.config_dir) if p.suffix in _SUFFIXES]
        except OSError as exc:
            raise _Unlistable(_describe(exc)) from exc
        out: dict[Path, Stamp | str] = {}
        for p in sorted(entries):
            try:
                st = self.fs.stat(p)
            except FileNotFoundError:  # removed between listing and stat: it is gone
                continue
            except OSError as exc:
                out[p] = _describe(exc)
                continue
            if stat.S_ISREG(st.st_mode):
                # The inode too: editors that save by rename may keep size and (coarse) mtime.
                out[p] = (st.st_mtime_ns, st.st_size, st.st_ino)
        return out

    def _read(self, path: Path, stamp: Stamp) -> _File:
        before = self._files.get(path)
        if before is not None and before.stamp == stamp and not before.unreadable:
            return before
        kept = before.docs if before is not None else ()
        try:
            text = self.fs.read(path)
        except FileNotFoundError:
            # Gone since the scan: keep it this round, the next scan leaves it out.
            return before if before is not None else _File(stamp, ())
        except OSError as exc:
            return self._unreadable(path, _describe(exc), stamp)
        except UnicodeDecodeError as exc:
            suffix = " (keeping its previous objects)" if kept else ""
            return _File(stamp, kept, f"invalid YAML: {_one_line(exc)}{suffix}")
        try:
            docs = tuple(d for d in yaml.safe_load_all(text) if d is not None)
        except yaml.YAMLError as exc:
            suffix = " (keeping its previous objects)" if kept else ""
            return _File(stamp, kept, f"invalid YAML: {_one_line(exc)}{suffix}")
        return _File(stamp, docs)

    def _unreadable(self, path: Path, error: str, stamp: Stamp | None = None) -> _File:
        """A file that exists but cannot be read keeps its last objects; failing again the same
        way is no change (the same object comes back, so nothing is recompiled)."""
        before = self._files.get(path)
        if before is not None and before.unreadable and before.error == error:
            return before
        if before is not None:
            return _File(before.stamp if stamp is None else stamp, before.docs, error, True)
        return _File((-1, -1, -1) if stamp is None else stamp, (), error, True)

    def _compile(
        self, files: dict[Path, _File], folder_problem: str | None
    ) -> compiler.CompileResult:
        self._files = files
        problems: list[compiler.Problem] = []
        if folder_problem is not None:
            problems.append(compiler.Problem(str(self.config_dir), "", "", "", "", folder_problem))
        objects: list[compiler.SourcedObject] = []
        seen: set[compiler.Key] = set()
        for path, f in self._files.items():
            if f.error:
                problems.append(compiler.Problem(str(path), "", "", "", "", f.error))
            for doc in f.docs:
                obj = self._admit(doc, str(path), problems, seen)
                objects.append(compiler.SourcedObject(obj, str(path)))
        # Deleted objects may come back with any spec, as after `kubectl delete`.
        self._accepted = {k: v for k, v in self._accepted.items() if k in seen}
        self._generations = {k: v for k, v in self._generations.items() if k in seen}
        previous = self.latest.contract if self.latest is not None else None
        result = compiler.compile(objects, self.env, previous)
        merged = sorted(
            (*problems, *result.problems),
            key=lambda p: (p.source, p.kind, p.namespace, p.name, p.field, p.reason),
        )
        return replace(result, problems=tuple(merged))

    def _admit(
        self, doc: Any, source: str, problems: list[compiler.Problem], seen: set[compiler.Key]
    ) -> Any:
        """What the API server would store: immutability enforced, generation maintained."""
        key = _key(doc)
        if key is None or key in seen:
            return doc
        seen.add(key)
        old = self._accepted.get(key)
        if old is not None:
            refused = compiler.validate_update(
                old, doc, defaults=self.env.defaults, default_class=self.env.default_broker_class
            )
            if refused:
                for message in refused:
                    problems.append(
                        compiler.Problem(
                            source,
                            key[0],
                            key[1],
                            key[2],
                            "",
                            f"{message}: keeping the previous version",
                        )
                    )
                return self._with_generation(key, old)
        self._accepted[key] = doc
        return self._with_generation(key, doc)

    def _with_generation(self, key: compiler.Key, doc: Mapping[str, Any]) -> Mapping[str, Any]:
        meta = doc.get("metadata")
        if not isinstance(meta, Mapping) or meta.get("generation") is not None:
            return doc
        spec = orjson.dumps(doc.get("spec"), option=orjson.OPT_SORT_KEYS, default=str)
        before = self._generations.get(key)
        generation = 1 if before is None else before[1] + (before[0] != spec)
        self._generations[key] = (spec, generation)
        out = copy.copy(dict(doc))
        out["metadata"] = {**meta, "generation": generation}
        return out


def _key(doc: Any) -> compiler.Key | None:
    if not isinstance(doc, Mapping):
        return None
    group = str(doc.get("apiVersion") or "").split("/")[0]
    kind, meta = doc.get("kind"), doc.get("metadata")
    if kind not in _CHECKED_KINDS.get(group, ()) or not isinstance(meta, Mapping):
        return None
    if not meta.get("name"):
        return None
    return (str(kind), str(meta.get("namespace") or "default"), str(meta["name"]))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _describe(exc: OSError) -> str:
    """An OS error on one line, without the path (the caller names the file or folder)."""
    if isinstance(exc, FileNotFoundError):
        return "config folder does not exist"
    if isinstance(exc, NotADirectoryError):
        return "config folder is not a folder"
    reason = exc.strerror or _one_line(exc)
    return f"cannot read: {reason}" + (f" (errno {exc.errno})" if exc.errno else "")


def load_once(config_dir: Path, env: compiler.Environment) -> compiler.CompileResult:
    """Compile the folder as it is now (for tests and `kbroker get`)."""
    source = FolderSource(config_dir, env, lambda _: None)
    result = source.refresh()
    if result is None:  # refresh always compiles the first time; keep mypy and readers sure
        return compiler.compile((), env, contract.Contract())
    return result
