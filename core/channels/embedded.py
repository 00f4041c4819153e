"""The embedded channel: each broker's events in a durable SQLite (WAL) log under the data dir.

Why SQLite: `kbroker run` must be durable with nothing else installed. SQLite gives atomic
transactions, a crash-safe WAL, file locking between processes (ingress may run as several
processes over one data dir) and a clean SQLITE_FULL instead of a torn file when the disk fills.
The speed comes from group commit in `_sqlite_log.SqliteLog`: concurrent appends share one
transaction and, at durability `all`, one fsync.

Why one database file per broker rather than one shared file: SQLite has one writer at a time per
database, so separate files let brokers commit in parallel (and one busy broker cannot stall
another's 202s); a full or locked database affects only its broker (507/503 stay per broker, as
the reliability targets require); `delete_broker` is removing four files, with no VACUUM of a
shared file; and a broker's size (for `retention_bytes`) is its own. The cost is one writer thread
and one set of file handles per broker, which is fine for the tens of brokers a single node hosts.
The file is `<data_dir>/<broker.topic or namespace.name>.db`, sanitised (see `db_path`).

Durability per append (the producer's choice): `none` returns once queued in memory (lost if the
process dies before the next commit); `leader` once the transaction is in the WAL (survives a
process kill, not a power cut); `all` once the WAL is fsynced (survives a power cut).

Reading: a subscription keeps an in-memory cursor starting at the trigger's committed position
(stored in the database, so it survives restarts). A waiting fetch wakes on an in-process
notification after each commit, and polls the log's end every ~50 ms so that appends by other
processes sharing the data dir are seen too.

Retention (`retention_seconds`, `retention_bytes` per broker) deletes from the head of the log
only what every trigger of the broker has committed: an event older than `retention_seconds`
goes at the next pass (once a second, on the writer thread); when an append would take the broker
over `retention_bytes`, committed events make room first, and if unconsumed events alone fill the
quota the append fails with ChannelFull (507) rather than dropping anything unread. A broker with
no trigger at all keeps nobody's events, so its old events simply age out (as on Kafka). Freed
pages are reused by later appends; the file itself does not shrink. A removed trigger must be
`delete_subscription`-ed, or its position holds retention back forever.

Damaged files and full disks (docs/operations.md): each log is checked when it opens (never per
append); a damaged one is left untouched and its broker answers 503 until an operator runs
`kbroker log salvage`. The data folder keeps a small preallocated reserve so that, on a full
disk, position commits and retention still run, and appends (507 meanwhile) resume by themselves
once retention has given space back.

What it refuses to do: several partitions (Record.partition is always 0), external topics (an
`external_topic` broker's file is never deleted), and cancelling an append once queued: an append
whose caller gave up (timeout -> 503) may still be stored, which is at-least-once, never loss.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kbroker.core import contract
from kbroker.core.channel import ChannelError, ChannelUnavailable, Envelope, EventTooLarge, Record
from kbroker.core.channels import _sqlite_inspect as sqlite_inspect
from kbroker.core.channels import _sqlite_log as sqlite_log
from kbroker.core.channels import _sqlite_store as store
from kbroker.core.channels._sqlite_reserve import Reserve
from kbroker.core.settings import EmbeddedSettings

READ_THREADS = 4
log = logging.getLogger(__name__)

T = TypeVar("T")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def db_path(data_dir: Path, broker: contract.Broker) -> Path:
    """The broker's database file. Names that sanitising changed get a hash suffix so two
    different brokers can never share a file."""
    name = broker.topic or f"{broker.namespace}.{broker.name}"
    safe = _UNSAFE.sub("_", name).lstrip(".") or "_"
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:10]
    return data_dir / f"{safe}.db"


@dataclass(frozen=True, slots=True)
class LogStats:
    """A snapshot of one broker's writer counters."""

    transactions: int
    synced_transactions: int
    events: int
    failed_transactions: int
    retained: int
    lost: dict[str, int]  # reason -> events accepted at durability `none` and then lost


class EmbeddedSubscription:
    """A trigger's reader: an in-memory cursor over the log, its position in the database."""

    def __init__(
        self,
        log: sqlite_log.SqliteLog,
        uid: contract.TriggerUid,
        earliest: bool,
        pool: Executor | None,
    ) -> None:
        self._log = log
        self._uid = uid
        self._earliest = earliest
        self._pool = pool
        self._cursor: int | None = None
        self._init: asyncio.Future[int] | None = None
        self._closed = False
        # Queued now, not at the first fetch: the writer is FIFO, so an append made after
        # subscribe() is ordered after this trigger's LATEST start and cannot be skipped.
        try:
            self._init = self._start()
        except ChannelError:
            self._init = None  # retried by the first fetch

    def _start(self) -> asyncio.Future[int]:
        # sync: a LATEST start lost to a power cut would be re-taken later, skipping events.
        return self._log.call(store.INIT, trigger=self._uid, value=int(self._earliest), sync=True)

    async def _in_pool(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except RuntimeError as err:  # the channel closed its executor under us
            raise ChannelUnavailable("embedded channel is closed") from err

    async def _position(self) -> int:
        if self._cursor is None:
            init = self._init if self._init is not None else self._start()
            self._init = init
            try:
                self._cursor = await init
            except ChannelError:
                self._init = None
                raise
        return self._cursor

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        cursor = await self._position()
        while not self._closed:
            if self._log.closed:
                raise ChannelUnavailable(
                    "embedded log is closed (channel closed or broker deleted)"
                )
            wake = self._log.wake  # taken before reading, so a commit in between is not missed
            if self._log.end > cursor:
                # The tail is usually in the log's cache: read it here, without a thread hop.
                records = self._log.cached(cursor, max_records)
                if not records:
                    records = await self._in_pool(self._log.read, cursor, max_records)
                if records:
                    self._cursor = records[-1].offset
                    return records
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._log.ensure_poller(self._pool)  # other processes' appends also set `wake`
            try:
                async with asyncio.timeout(remaining):
                    await wake.wait()
            except TimeoutError:
                break
        return []

    async def commit(self, partition: int, offset: int) -> None:
        if partition != 0:
            raise ValueError(f"embedded channel has partition 0 only, not {partition}")
        await self._position()
        await self._log.call(store.COMMIT, trigger=self._uid, value=offset)

    async def lag(self) -> int:
        await self._position()
        return await self._in_pool(self._log.lag, self._uid)

    async def close(self) -> None:
        self._closed = True


class EmbeddedChannel:
    """The Channel Protocol over one SQLite log per broker under `settings.data_dir`."""

    name = "embedded"

    def __init__(
        self,
        settings: EmbeddedSettings,
        *,
        connect: store.Connect = store.default_connect,
        retention_interval: float = sqlite_log.RETENTION_INTERVAL,
        max_backlog_bytes: int = sqlite_log.MAX_BACKLOG_BYTES,
        reserve_bytes: int | None = None,
    ) -> None:
        self._settings = settings
        self._reserve = Reserve(settings.data_dir, reserve_bytes)
        self._max_backlog_bytes = max_backlog_bytes
        self._connect = connect
        self._retention_interval = retention_interval
        self._logs: dict[Path, sqlite_log.SqliteLog] = {}
        self._paths: dict[tuple[str, str, str], Path] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="kbroker-log-read")
        try:
            await asyncio.to_thread(self._settings.data_dir.mkdir, parents=True, exist_ok=True)
            if not await asyncio.to_thread(self._reserve.create):
                log.warning(
                    "data dir %s: no room for the %d-byte disk reserve; appends get 507 until"
                    " there is",
                    self._settings.data_dir,
                    self._reserve.size,
                )
        except OSError as err:
            raise ChannelUnavailable(f"data dir {self._settings.data_dir}: {err}") from err

    async def close(self) -> None:
        self._loop = None  # no new logs (and writer threads) after close
        logs, self._logs = list(self._logs.values()), {}
        for log in logs:
            log.cancel_poller()
        # Stopping flushes each writer's queue; the loop keeps running to receive the results.
        await asyncio.gather(*(asyncio.to_thread(log.stop) for log in logs))
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _path(self, broker: contract.Broker) -> Path:
        # Cached: building a Path costs more than the rest of an append's bookkeeping.
        ident = (broker.topic, broker.namespace, broker.name)
        path = self._paths.get(ident)
        if path is None:
            path = self._paths[ident] = db_path(self._settings.data_dir, broker)
        return path

    def _log(self, broker: contract.Broker) -> sqlite_log.SqliteLog:
        path = self._path(broker)
        log = self._logs.get(path)
        if log is None:
            if self._loop is None:
                raise ChannelUnavailable("embedded channel is not started")
            log = sqlite_log.SqliteLog(
                path,
                loop=self._loop,
                connect=self._connect,
                busy_timeout=self._settings.busy_timeout,
                group_commit_max=self._settings.group_commit_max,
                retention_bytes=self._settings.retention_bytes,
                retention_seconds=self._settings.retention_seconds,
                retention_interval=self._retention_interval,
                max_backlog_bytes=self._max_backlog_bytes,
                shared_writers=self._settings.shared_writers,
                reserve=self._reserve,
            )
            self._logs[path] = log
        return log

    async def ensure_broker(self, broker: contract.Broker) -> None:
        await self._log(broker).call(store.PROBE)

    async def delete_broker(self, broker: contract.Broker) -> None:
        if broker.external_topic:
            return
        path = self._path(broker)
        log = self._logs.pop(path, None)
        if log is not None:
            log.cancel_poller()
            await asyncio.to_thread(log.stop)
        await asyncio.to_thread(_remove_files, path)

    async def append(
        self,
        broker: contract.Broker,
        envelopes: Sequence[Envelope],
        durability: contract.Durability,
    ) -> None:
        if not envelopes:
            return
        rows, sizes = store.encode(envelopes)
        limit = self._settings.retention_bytes
        if max(sizes) > limit:
            raise EventTooLarge(f"event of {max(sizes)} bytes exceeds retention_bytes {limit}")
        log = self._log(broker)
        if durability is contract.Durability.NONE:
            log.submit(store.Op(store.APPEND, None, rows, envelopes, sum(sizes)))
            return
        sync = durability is contract.Durability.ALL
        await log.call(store.APPEND, rows=rows, envelopes=envelopes, nbytes=sum(sizes), sync=sync)

    def subscribe(self, broker: contract.Broker, trigger: contract.Trigger) -> EmbeddedSubscription:
        earliest = trigger.start_from is contract.StartFrom.EARLIEST
        return EmbeddedSubscription(self._log(broker), trigger.uid, earliest, self._pool)

    async def delete_subscription(self, broker: contract.Broker, trigger: contract.Trigger) -> None:
        await self._log(broker).call(store.FORGET, trigger=trigger.uid)

    async def recent(self, broker: contract.Broker, limit: int) -> list[Record]:
        """Inspector: the last `limit` events (core/channels/_sqlite_inspect)."""
        return await sqlite_inspect.recent(self._log(broker), limit, self._pool)

    async def tail(self, broker: contract.Broker) -> sqlite_inspect.SqliteTail:
        """Inspector: a reader from the log's end that writes nothing."""
        return await sqlite_inspect.SqliteTail.open(self._log(broker), self._pool)

    async def healthy(self) -> bool:
        """Every open log takes a write (a probe transaction), or the data dir is writable."""
        try:
            if not self._logs:
                return await asyncio.to_thread(_writable, self._settings.data_dir)
            timeout = self._settings.busy_timeout + 1.0
            probes = [log.call(store.PROBE) for log in self._logs.values()]
            await asyncio.wait_for(asyncio.gather(*probes), timeout)
        except (ChannelError, TimeoutError):
            return False
        return True

    def damage(self, broker: contract.Broker) -> str | None:
        """Why the broker's log is damaged (found at open or by a failed read or write), or
        None. A damaged log is never written again in this process; see `_sqlite_check`."""
        log = self._logs.get(self._path(broker))
        return None if log is None else log.damage

    def problem(self, broker: contract.Broker) -> str | None:
        """ProblemReporter: the damage found in the broker's log, as /status shows it."""
        why = self.damage(broker)
        return None if why is None else f"embedded log {self._path(broker).name} is damaged: {why}"

    @property
    def disk_full(self) -> bool:
        """The data folder's disk filled up and its reserve is released (appends get 507)."""
        return self._reserve.full

    async def run_retention(self, broker: contract.Broker) -> int:
        """Run one retention pass now (the writer also runs one every second); bytes freed."""
        freed: int = await self._log(broker).call(store.RETAIN)
        return freed

    def stats(self, broker: contract.Broker) -> LogStats:
        log = self._log(broker)
        s = log.stats
        return LogStats(
            s.transactions,
            s.synced_transactions,
            s.events,
            s.failed_transactions,
            s.retained,
            dict(log.losses.lost),
        )


def _remove_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".lock", ".end"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _writable(data_dir: Path) -> bool:
    probe = data_dir / ".kbroker-probe"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True
