"""`kbroker run`: the whole broker in one process (folder controller + ingress + dispatcher).

A composition of the parts in kbroker/wiring.py, in the order an event needs things: channels
first, then the folder source that compiles YAML into a contract (creating each broker's storage
before the contract is published, and deleting a removed broker's storage only after its workers
stopped and controller/retirement's grace period passed), then the dispatcher
(filter/service.py) and the HTTP server. Shutdown runs in reverse: HTTP drains
(kbroker/wiring_http.py), then in-flight deliveries finish for a moment."""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from kbroker import limit_flags, ops_guard, status_api, ui_wiring, wiring, wiring_http
from kbroker.controller import compiler, files, retirement, transitions
from kbroker.core import logs, telemetry, tls
from kbroker.core.channel import ChannelError
from kbroker.core.contract_source import ContractHolder
from kbroker.core.settings import RunSettings, env
from kbroker.filter.service import FilterService
from kbroker.ingress.app import build_app, ingress_ready
from kbroker.ingress.priority import DeliveryPriority
from kbroker.ingress.protocol import bounded_protocol
from kbroker.sources.emit import SinkEmitter
from kbroker.sources.ping import PingRunner
from kbroker.sources.ping_state import TickRecord

log = logging.getLogger("kbroker")

# Kept importable from here: tests and tools build a Standalone with these.
bind = wiring.bind
bind_unix = wiring.bind_unix
open_channels = wiring.open_channels


def environment(
    settings: RunSettings, base_url: str, ca_certs: str | None = None
) -> compiler.Environment:
    classes = dict(compiler.Environment(ingress_base_url=base_url).class_channels)
    kafka_config: tuple[tuple[str, str], ...] = ()
    if settings.kafka_bootstrap:
        classes["MTChannelBasedBroker"] = "kafka"
        kafka_config = (("bootstrap.servers", settings.kafka_bootstrap),)
    elif settings.rabbitmq_url:
        classes["MTChannelBasedBroker"] = "rabbitmq"
    return compiler.Environment(
        ingress_base_url=base_url,
        ingress_ca_certs=ca_certs,
        class_channels=classes,
        default_kafka_config=kafka_config,
        nats_url=settings.nats_url,
        default_rabbitmq_url=settings.rabbitmq_url or "",
        topic_template=settings.topic_template,
        group_template=settings.group_template,
    )


class Standalone:
    def __init__(
        self,
        settings: RunSettings,
        sock: socket.socket,
        tracing: telemetry.Tracing | None = None,
        server_tls: tls.ReloadingServerContext | None = None,
    ) -> None:
        self.settings = settings
        self.sock = sock
        self.tls = server_tls
        _host, port = sock.getsockname()[:2]
        self.base_url = f"{'https' if server_tls else 'http'}://{settings.host}:{port}"
        self.channels = wiring.open_channels(settings)
        self.holder = ContractHolder()
        self.observability = wiring.Observability(tracing or telemetry.disabled())
        self.tracing = self.observability.tracing
        self.metrics = self.observability.metrics
        self.observability.watch_channels(
            self.channels, lambda: self.holder.current.brokers, settings.embedded.data_dir
        )
        self.retirement = retirement.Retirement(self.channels, settings.removal_grace)
        self.filter = FilterService(
            self.channels,
            self.holder,
            settings.dispatcher,
            hooks=self.metrics,
            tracing=self.tracing,
            forget=self.retirement.forget,
        )
        self.pool = self.filter.pool
        self.pings = PingRunner(
            lambda: self.holder.current,
            TickRecord(settings.data_dir / "pingsources"),
            SinkEmitter(self.channels, self.holder.broker),
        )
        self.result: compiler.CompileResult | None = None
        self.stopping = asyncio.Event()  # set by SIGINT/SIGTERM, or by a test running us in-process
        self.storage_errors: dict[str, str] = {}
        self.conditions = transitions.ConditionTimes(settings.data_dir / "conditions.json")
        self.folder = files.FolderSource(
            settings.config_dir,
            environment(settings, self.base_url, server_tls.ca_pem() if server_tls else None),
            self.on_update,
            settings.poll_interval,
        )
        self._ingress_ready = ingress_ready(
            self.holder, self.channels, "configuration not loaded yet"
        )

    @property
    def contract_file(self) -> Path:
        return self.settings.data_dir / "contract.json"

    @property
    def admin_socket(self) -> Path:
        """Where extra ingress processes send requests that are not events (ingress/admin_proxy)."""
        return self.settings.data_dir / "kbroker-admin.sock"

    async def _start_ingress_processes(self) -> list[subprocess.Popen[bytes]]:
        """`--processes N`: N-1 `kbroker ingress` processes on the same port (SO_REUSEPORT),
        appending to the same channels; this process alone runs the controller and dispatcher,
        so no event is dispatched twice. They start once the first contract is written."""
        if self.settings.processes <= 1:
            return []
        while not self.contract_file.exists():
            await asyncio.sleep(0.05)
        port = self.sock.getsockname()[1]
        cmd = [
            sys.executable,
            "-m",
            "kbroker",
            "ingress",
            "--contract",
            str(self.contract_file),
            "--host",
            self.settings.host,
            "--port",
            str(port),
            "--data",
            str(self.settings.data_dir),
            "--poll",
            "0.2",
            "--reuse-port",
            "--admin-proxy",
            str(self.admin_socket),
            "--log-level",
            "warning",
            "--log-format",
            self.settings.logs.format,
            "--shutdown-grace",
            str(self.settings.shutdown.grace),
            *limit_flags.argv(self.settings.ingress),
        ]
        if self.settings.kafka_bootstrap:
            cmd += ["--kafka", self.settings.kafka_bootstrap]
        if self.settings.nats_url:
            cmd += ["--nats", self.settings.nats_url]
        if self.settings.rabbitmq_url:
            cmd += ["--rabbitmq", self.settings.rabbitmq_url]
        procs = [
            subprocess.Popen(cmd, stdout=subprocess.PIPE)
            for _ in range(self.settings.processes - 1)
        ]
        # "kbroker ready" only once every extra process listens: clients that connect at once
        # and keep their connections (keep-alive) would otherwise all land on this process.
        ready = await asyncio.gather(
            *(asyncio.to_thread(_wait_ready, p, HELPER_READY_TIMEOUT) for p in procs)
        )
        for p, ok in zip(procs, ready, strict=True):
            if not ok:
                log.error(
                    "extra ingress process %d did not report ready; serving without it", p.pid
                )
        return procs

    async def on_update(self, result: compiler.CompileResult) -> None:
        started = time.perf_counter()
        previous = self.holder.current
        for b in result.contract.brokers:
            channel = self.channels.get(b.channel)
            try:
                if channel is None:
                    raise ChannelError(f"channel {b.channel!r} is not available")
                await channel.ensure_broker(b)
                self.storage_errors.pop(str(b.key), None)
            except ChannelError as exc:
                log.error("broker %s: storage not ready: %s", b.key, exc)
                self.storage_errors[str(b.key)] = str(exc)
        await self.holder.publish(result.contract)
        if self.settings.processes > 1:
            # Extra ingress processes (kbroker ingress) read the contract from this file.
            await asyncio.to_thread(
                _write_atomically, self.contract_file, result.contract.to_json()
            )
        # Status only after the workers exist: a Trigger reported Ready has its start position.
        self.result = result
        status_api.observe(self)
        await self.retirement.retire(previous, result.contract)
        self.metrics.reconciled(
            (
                (kind, st.ready and f"{ns}/{name}" not in self.storage_errors)
                for (kind, ns, name), st in result.statuses.items()
            ),
            time.perf_counter() - started,
        )

    async def ready(self) -> tuple[bool, str]:
        ok, why = await self._ingress_ready()
        if not ok:
            return ok, why
        ok, why = await self.filter.ready()
        if ok and not self.folder.health.ok:  # still serving the last good configuration
            return True, "ok, degraded: " + "; ".join(self.folder.health.errors)
        return ok, why

    async def serve(self) -> None:
        """Serve until `stopping` is set (SIGINT/SIGTERM when run by `run`), then stop cleanly."""
        await wiring.start_channels(self.channels, required=True)
        try:
            await self._serve()
        finally:
            await self.pings.close(self.settings.shutdown.drain_workers)
            await self.filter.close(self.settings.shutdown.drain_workers)
            await self.retirement.close()
            self.filter.pool.dispatcher.flush_log()
            await wiring.close_channels(self.channels)
            self.observability.shutdown()
        logs.log_shutdown(log, "stopped", "kbroker run")

    async def _serve(self) -> None:
        # Ingress and dispatcher share this process: KBROKER_DELIVERY_PRIORITY=on holds new
        # events back while delivery falls behind for want of CPU (ingress/priority.py). Off by
        # default: on a shared machine it measured worse (docs/benchmarks.md, Overload).
        priority = None
        if (env("KBROKER_DELIVERY_PRIORITY") or "off").lower() == "on":
            priority = DeliveryPriority(self.pool.behind)
        app = build_app(
            self.settings.ingress,
            self.channels,
            self.holder,
            self.ready,
            extra_routes=[
                *status_api.routes(self),
                self.observability.metrics_route(self.filter.trigger_states),
                *ui_wiring.console_routes(self, self.settings.host, self.settings.ops_token_file),
            ],
            observer=self.metrics,
            tracing=self.tracing,
            priority=priority,
        )
        folder_task = asyncio.create_task(self.folder.run(), name="folder-source")
        background = [folder_task]
        background.append(asyncio.create_task(self.pings.run(self.stopping), name="pingsources"))
        if priority is not None:
            background.append(asyncio.create_task(priority.run(), name="delivery-priority"))
        if self.tls is not None:
            background.append(asyncio.create_task(self.tls.run(), name="tls-reload"))
        sockets = [self.sock]
        if self.settings.processes > 1:
            sockets.append(wiring.bind_unix(self.admin_socket))
        # Extra processes first, serving after: a client that sees this process answer (even
        # /readyz) and then opens its keep-alive connections must find every process listening.
        helpers = await self._start_ingress_processes()

        async def stop_helpers() -> None:
            for proc in helpers:  # they drain their own connections meanwhile
                proc.terminate()

        try:
            await wiring_http.serve(
                "kbroker",
                ops_guard.guard(app, self.settings.ops_token_file),
                sockets,
                self.settings.shutdown,
                self.stopping,
                background=background,
                ready_line=f"kbroker ready on {self.base_url}",
                before_drain=stop_helpers,
                tls=self.tls.context if self.tls else None,
                protocol=bounded_protocol(
                    self.settings.ingress.server, self.metrics, self.settings.ingress.retry_after
                ),
            )
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            reap = self.settings.shutdown.grace + 5.0
            await asyncio.gather(*(asyncio.to_thread(_reap, p, reap) for p in helpers))


HELPER_READY_TIMEOUT = 60.0  # seconds for an extra ingress process to start listening


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Copy the helper's stdout to our stderr until its "ready on" line (True), or until it exits
    or `timeout` passes (False); then keep copying in the background. Stderr, because our own
    first stdout line is `kbroker ready on URL`, which scripts and tests read."""
    out = proc.stdout
    assert out is not None
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([out], [], [], left)
        if not readable:
            break
        line = out.readline()
        if not line:
            return False  # it exited
        sys.stderr.buffer.write(line)
        sys.stderr.flush()
        if b" ready on " in line:
            threading.Thread(target=_pass_through, args=(out,), daemon=True).start()
            return True
    return False


def _pass_through(out: IO[bytes]) -> None:
    for line in out:
        sys.stderr.buffer.write(line)
        sys.stderr.flush()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(settings: RunSettings) -> int:
    """Run until SIGINT/SIGTERM; the exit code (2, with one line on stderr, if it cannot start)."""

    async def main() -> None:
        tracing = wiring.tracing_from_env()
        wiring.check_folder("config folder", settings.config_dir, writable=False)
        wiring.check_folder("data folder", settings.data_dir, writable=True)
        server_tls = wiring.server_tls(settings.tls)
        if server_tls is not None and settings.processes > 1:
            # Extra processes pass operational requests over a plaintext Unix socket.
            raise wiring.StartupError("--processes above 1 cannot serve TLS yet")
        sock = wiring.bind(settings.host, settings.port, reuse_port=settings.reuse_port)
        app = Standalone(settings, sock, tracing, server_tls)
        remove = wiring_http.stop_on_signals(app.stopping)
        try:
            await app.serve()
        finally:
            remove()

    return wiring.run_process(main)
