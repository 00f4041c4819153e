"""The servers a benchmark points its load at: the ceiling app, `kbroker run`, or a given URL.

Why one small seam (`Target`): the scenarios only need a base URL and the pids whose CPU and
memory to report; whether the server is a bare ASGI app, a broker this run started with a
generated config, or a broker someone else started (`--url`, no pid, no CPU figures) is decided
once, here. Child servers run under `env` so that OTEL_* variables reach the broker without this
package reading or copying the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import aiohttp


class TargetError(Exception):
    """A server under test would not start or become ready."""


class Target(Protocol):
    url: str

    def pids(self) -> list[int]: ...

    async def stop(self) -> None: ...


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the child binds it; the race is acceptable here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_ready(url: str, proc: asyncio.subprocess.Process | None, timeout: float) -> float:
    """Poll `url` until it answers 200; the seconds it took."""
    t0 = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
        while time.monotonic() - t0 < timeout:
            if proc is not None and proc.returncode is not None:
                raise TargetError(f"server exited with code {proc.returncode} before ready")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return time.monotonic() - t0
            await asyncio.sleep(0.05)
    raise TargetError(f"{url} not ready after {timeout:.0f} s")


@dataclass
class ProcessTarget:
    """A server process this run started and stops."""

    url: str
    proc: asyncio.subprocess.Process
    log: Path | None = None
    ready_seconds: float = 0.0
    _logfile: IO[bytes] | None = field(default=None, repr=False)

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def log_tail(self, lines: int = 30) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10.0)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._logfile is not None:
            self._logfile.close()


@dataclass
class UrlTarget:
    """A server someone else runs: no pid, so no CPU or memory figures."""

    url: str

    def pids(self) -> list[int]:
        return []

    async def stop(self) -> None:
        return None


async def _spawn(
    argv: list[str], env: dict[str, str], log: Path | None
) -> tuple[asyncio.subprocess.Process, IO[bytes] | None]:
    prefix = ["env", *(f"{k}={v}" for k, v in sorted(env.items()))] if env else []
    logfile = log.open("wb") if log is not None else None
    proc = await asyncio.create_subprocess_exec(
        *prefix,
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=logfile if logfile is not None else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.STDOUT if logfile is not None else asyncio.subprocess.DEVNULL,
    )
    return proc, logfile


async def start_ceiling(processes: int = 1, log: Path | None = None) -> ProcessTarget:
    """The bare ASGI app under uvicorn + httptools + uvloop, `processes` workers."""
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "kbroker.bench.ceiling:app",
        "--host", "127.0.0.1", "--port", str(port),
        "--http", "httptools", "--loop", "uvloop",
        "--no-access-log", "--log-level", "warning", "--backlog", "4096",
    ]  # fmt: skip
    if processes > 1:
        argv += ["--workers", str(processes)]
    proc, logfile = await _spawn(argv, {}, log)
    target = ProcessTarget(f"http://127.0.0.1:{port}", proc, log, _logfile=logfile)
    await _ready_or_stop(target, f"{target.url}/", 20.0, any_status=True)
    return target


async def start_broker(
    config: Path,
    data: Path,
    processes: int = 1,
    kafka: str | None = None,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    timeout: float = 30.0,
    nats: str | None = None,
    rabbitmq: str | None = None,
) -> ProcessTarget:
    """`kbroker run` on a free port with the generated config; ready when /readyz answers 200."""
    port = free_port()
    argv = [
        sys.executable, "-m", "kbroker", "run",
        "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--data", str(data),
    ]  # fmt: skip
    for flag, url in (("--kafka", kafka), ("--nats", nats), ("--rabbitmq", rabbitmq)):
        if url:
            argv += [flag, url]
    if kafka or nats or rabbitmq:
        # A topic, stream or exchange left by an earlier run would hand this one its backlog
        # (and its consumers' positions): names unique to the run keep runs apart.
        tag = uuid.uuid4().hex[:8]
        argv += [f"--topic-template=kbroker-bench-{tag}-{{namespace}}-{{name}}",
                 f"--group-template=kbroker-bench-{tag}-{{namespace}}-{{name}}"]  # fmt: skip
    if processes > 1:
        # `kbroker run --processes N`: N ingress processes share the port, the first dispatches.
        argv += ["--processes", str(processes)]
    proc, logfile = await _spawn(argv, env or {}, log)
    target = ProcessTarget(f"http://127.0.0.1:{port}", proc, log, _logfile=logfile)
    await _ready_or_stop(target, f"{target.url}/readyz", timeout)
    return target


async def _ready_or_stop(
    target: ProcessTarget, url: str, timeout: float, any_status: bool = False
) -> None:
    try:
        if any_status:
            target.ready_seconds = await _wait_listening(url, target.proc, timeout)
        else:
            target.ready_seconds = await wait_ready(url, target.proc, timeout)
    except TargetError as exc:
        await target.stop()
        raise TargetError(f"{exc}\n{target.log_tail()}") from exc


async def _wait_listening(url: str, proc: asyncio.subprocess.Process, timeout: float) -> float:
    """Like wait_ready, but any HTTP answer will do (the ceiling app answers 202 to anything)."""
    t0 = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
        while time.monotonic() - t0 < timeout:
            if proc.returncode is not None:
                raise TargetError(f"server exited with code {proc.returncode} before ready")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with session.get(url):
                    return time.monotonic() - t0
            await asyncio.sleep(0.05)
    raise TargetError(f"{url} not listening after {timeout:.0f} s")
