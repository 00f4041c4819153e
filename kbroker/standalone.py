"""`kbroker run`: the whole broker in one process (folder controller + ingress + dispatcher).

Wiring only, in the order an event needs things: channels first, then the folder source that
compiles YAML into a contract (creating each broker's storage before the contract is published, and
deleting a removed broker's storage only after its workers stopped), then the dispatcher pool and
the HTTP server. Shutdown runs in reverse and lets in-flight deliveries finish for a moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import uvicorn

from kbroker import status_api
from kbroker.controller import compiler, files, transitions
from kbroker.core import metrics, telemetry
from kbroker.core.channel import Channel, ChannelError
from kbroker.core.channels.embedded import EmbeddedChannel
from kbroker.core.contract_source import ContractHolder
from kbroker.core.settings import RunSettings
from kbroker.filter.dispatch import Dispatcher
from kbroker.filter.httpclient import HttpClient
from kbroker.filter.pool import WorkerPool
from kbroker.filter.sender import AiohttpSender
from kbroker.filter.tokens import TokenSender
from kbroker.ingress.app import build_app, server_config, tune_gc_for_serving

log = logging.getLogger(__name__)


def open_channels(settings: RunSettings) -> dict[str, Channel]:
    """Every backend this process can serve; which one a broker uses is its class's choice."""
    from kbroker.core.channels import kafka

    return {
        "embedded": EmbeddedChannel(settings.embedded),
        "kafka": kafka.KafkaChannel(kafka.KafkaSettings(bootstrap=settings.kafka_bootstrap)),
    }


def environment(settings: RunSettings, base_url: str) -> compiler.Environment:
    classes = dict(compiler.Environment(ingress_base_url=base_url).class_channels)
    kafka_config: tuple[tuple[str, str], ...] = ()
    if settings.kafka_bootstrap:
        classes["MTChannelBasedBroker"] = "kafka"
        kafka_config = (("bootstrap.servers", settings.kafka_bootstrap),)
    return compiler.Environment(
        ingress_base_url=base_url,
        class_channels=classes,
        default_kafka_config=kafka_config,
        topic_template=settings.topic_template,
        group_template=settings.group_template,
    )


class Standalone:
    def __init__(
        self,
        settings: RunSettings,
        sock: socket.socket,
        tracing: telemetry.Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.sock = sock
        _host, port = sock.getsockname()[:2]
        self.base_url = f"http://{settings.host}:{port}"
        self.channels = open_channels(settings)
        self.holder = ContractHolder()
        # Adds OIDC tokens for destinations that declare an audience (authentication-oidc).
        self.sender = TokenSender(HttpClient(fallback=AiohttpSender()), self.holder)
        self.tracing = tracing or telemetry.disabled()
        self.metrics = metrics.Metrics()
        self.metrics.watch_channels(
            self.channels,
            lambda: self.holder.current.brokers,
            metrics.storage_bytes_for(settings.embedded.data_dir),
        )
        self.dispatcher = Dispatcher(
            self.sender, settings.dispatcher, hooks=self.metrics, tracing=self.tracing
        )
        self.pool = WorkerPool(self.channels, self.dispatcher, settings.dispatcher)
        self.holder.subscribe(self.pool.apply)
        self.result: compiler.CompileResult | None = None
        self.stopping = asyncio.Event()  # set by SIGINT/SIGTERM, or by a test running us in-process
        self.storage_errors: dict[str, str] = {}
        self.conditions = transitions.ConditionTimes(settings.data_dir / "conditions.json")
        self.folder = files.FolderSource(
            settings.config_dir,
            environment(settings, self.base_url),
            self.on_update,
            settings.poll_interval,
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
        ]
        if self.settings.kafka_bootstrap:
            cmd += ["--kafka", self.settings.kafka_bootstrap]
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
        kept = {b.key for b in result.contract.brokers}
        for b in previous.brokers:
            if b.key not in kept and (channel := self.channels.get(b.channel)) is not None:
                with contextlib.suppress(ChannelError):
                    await channel.delete_broker(b)
        self.metrics.reconciled(
            (
                (kind, st.ready and f"{ns}/{name}" not in self.storage_errors)
                for (kind, ns, name), st in result.statuses.items()
            ),
            time.perf_counter() - started,
        )

    async def ready(self) -> tuple[bool, str]:
        if not self.holder.loaded:
            return False, "configuration not loaded yet"
        for b in self.holder.current.brokers:
            channel = self.channels.get(b.channel, None)
            if channel is None or not await channel.healthy():
                return False, f"channel {b.channel} of broker {b.key} unavailable"
        if not self.pool.healthy():
            return False, "a trigger worker stopped"
        return True, "ok"

    async def serve(self) -> None:
        for channel in self.channels.values():
            await channel.start()
        app = build_app(
            self.settings.ingress,
            self.channels,
            self.holder,
            self.ready,
            extra_routes=status_api.routes(self),
            observer=self.metrics,
            tracing=self.tracing,
        )
        config = server_config(app)
        server = uvicorn.Server(config)
        stop = self.stopping
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        folder_task = asyncio.create_task(self.folder.run(), name="folder-source")
        sockets = [self.sock]
        if self.settings.processes > 1:
            sockets.append(bind_unix(self.admin_socket))
        # Extra processes first, serving after: a client that sees this process answer (even
        # /readyz) and then opens its keep-alive connections must find every process listening.
        helpers = await self._start_ingress_processes()
        server_task = asyncio.create_task(server.serve(sockets=sockets), name="http")
        tune_gc_for_serving()
        print(f"kbroker ready on {self.base_url}", flush=True)
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([server_task, folder_task, stopper], return_when=asyncio.FIRST_COMPLETED)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        server.should_exit = True
        for proc in helpers:
            proc.terminate()
        await asyncio.gather(*(asyncio.to_thread(_reap, p) for p in helpers))
        folder_task.cancel()
        await asyncio.gather(folder_task, return_exceptions=True)
        await asyncio.gather(server_task, return_exceptions=True)
        await self.pool.close()
        await self.sender.close()
        for channel in self.channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
        self.tracing.shutdown()  # flush the last spans
        stopper.cancel()


def bind_unix(path: Path) -> socket.socket:
    """A listening Unix socket at `path` (a stale one from a killed run is replaced), owner-only."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    path.chmod(0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


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


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # the kernel spreads connections over every process bound to the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def run(settings: RunSettings) -> None:
    import uvloop

    try:
        tracing = telemetry.Tracing(telemetry.build_provider(telemetry.trace_settings()))
    except telemetry.TelemetryConfigError as exc:
        log.error("tracing: %s", exc)
        raise SystemExit(2) from None
    sock = bind(settings.host, settings.port, reuse_port=settings.reuse_port)
    app = Standalone(settings, sock, tracing)
    uvloop.run(app.serve())
