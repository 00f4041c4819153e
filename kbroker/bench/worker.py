"""Child processes of the benchmark (generators, receiver) and how the coordinator drives them.

Why subprocesses speaking JSON lines over stdin/stdout rather than multiprocessing: each child is
a plain `python -m kbroker.bench.<module>` with its own event loop (uvloop when installed) and
its own pid, so its CPU time can be read from /proc, and nothing depends on how the parent was
started (pytest, `python -m kbroker`, a console script). One command per line, one answer per
line; an answer `{"error": ...}` is raised in the parent as `WorkerError`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any, Protocol

import orjson


class WorkerError(Exception):
    """A child process failed a command, or died."""


class Handler(Protocol):
    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]: ...

    async def close(self) -> None: ...


async def _serve(factory: Callable[[], Handler]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    handler = factory()
    out = sys.stdout.buffer
    try:
        while line := await reader.readline():
            cmd = orjson.loads(line)
            if cmd.get("op") == "stop":
                break
            try:
                answer = await handler.handle(cmd)
            except Exception as exc:  # reported to the parent, which raises it
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            out.write(orjson.dumps(answer) + b"\n")
            out.flush()
    finally:
        await handler.close()


def serve(factory: Callable[[], Handler]) -> None:
    """Child entry point: answer commands from stdin until `stop` or end of input."""
    try:
        import uvloop

        uvloop.run(_serve(factory))
    except ImportError:
        asyncio.run(_serve(factory))


class WorkerProcess:
    """The parent's handle on one child: start it, send commands, stop it."""

    def __init__(self, module: str) -> None:
        self.module = module
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise WorkerError(f"{self.module} is not running")
        return self._proc.pid

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise WorkerError(f"{self.module} is not running")
        async with self._lock:  # one command in flight per child: answers come back in order
            proc.stdin.write(orjson.dumps({"op": op, **args}) + b"\n")
            await proc.stdin.drain()
            line = await proc.stdout.readline()
        if not line:
            raise WorkerError(f"{self.module} exited (code {await proc.wait()})")
        answer: dict[str, Any] = orjson.loads(line)
        if "error" in answer:
            raise WorkerError(f"{self.module}: {answer['error']}")
        return answer

    async def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(b'{"op":"stop"}\n')
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
