"""A real NATS server with JetStream for tests and `make nats`, built from the Go module proxy.

Why this exists: the machines reach the Go module proxy but no release downloads and no container
registry, so `nats-server` is compiled here with `go install` into `.cache/bin/` (once; a binary
already there is reused). Then one node, or a three-node JetStream cluster whose routes stay on
loopback, is started on ports picked free per run, each node with its own data dir.

    hack/nats.py build                                    nats-server into .cache/bin/ (if missing)
    hack/nats.py start [--nodes 1|3] [--dir D] [--foreground]
    hack/nats.py stop [--dir D]
    hack/nats.py kill-node N [--dir D]                    SIGKILL one node (fault tests)
    hack/nats.py start-node N [--dir D]                   restart it on its own data dir

Importable too: `NatsCluster(run_dir, nodes=1).start()` returns the client URL(s); the pytest
fixtures in test/fixtures/nats.py use that. `start` prints the URL on stdout.

What it refuses to do: listen anywhere but 127.0.0.1, wipe a data dir of a node it restarts, or
wait without a bound. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NATS_VERSION = "2.15.3"
MODULE = "github.com/nats-io/nats-server/v2"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".run" / "nats"
STATE_FILE = "state.json"


class NatsError(RuntimeError):
    """Building or starting the server failed; the message carries the output or log tail."""


def binary(version: str = NATS_VERSION) -> Path:
    return ROOT / ".cache" / "bin" / f"nats-server-{version}"


def build(version: str = NATS_VERSION, quiet: bool = False) -> Path:
    """`go install` the server into .cache/bin/nats-server-<version>; a no-op when it is there."""
    dest = binary(version)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Install into a temp dir and rename, so an interrupted build never looks complete.
    tmp = Path(tempfile.mkdtemp(prefix="nats-build-", dir=dest.parent))
    t0 = time.monotonic()
    proc = subprocess.run(
        ["go", "install", f"{MODULE}@v{version}"],
        env={**os.environ, "GOBIN": str(tmp), "CGO_ENABLED": "0"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0 or not (tmp / "nats-server").exists():
        shutil.rmtree(tmp, ignore_errors=True)
        raise NatsError(f"go install {MODULE}@v{version} failed:\n{proc.stderr[-4000:]}")
    (tmp / "nats-server").rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    if not quiet:
        print(f"nats-server {version}: {dest} ({time.monotonic() - t0:.1f}s)")
    return dest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Node:
    node_id: int
    port: int  # clients
    cluster_port: int  # routes between nodes (unused with one node)
    monitor_port: int  # /healthz, which answers 200 only once JetStream is ready


class NatsCluster:
    """One or three `nats-server -js` processes under `run_dir`."""

    def __init__(self, run_dir: Path = DEFAULT_DIR, nodes: int = 1, version: str = NATS_VERSION):
        if nodes not in (1, 3):
            raise ValueError("nodes must be 1 or 3")
        self.run_dir = Path(run_dir).resolve()
        self.version = version
        self.nodes: list[Node] = []
        self.pids: dict[int, int] = {}
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._count = nodes

    @property
    def url(self) -> str:
        """The client URL(s), comma-separated (what `kbroker run --nats` takes)."""
        return ",".join(f"nats://127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> str:
        """Fresh data dirs, every node started, JetStream ready on each (meta leader elected)."""
        build(self.version, quiet=True)
        if (self.run_dir / STATE_FILE).exists():
            NatsCluster.load(self.run_dir).stop()  # a previous run left nodes behind
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        self.nodes = [
            Node(i, free_port(), free_port(), free_port()) for i in range(1, self._count + 1)
        ]
        for node in self.nodes:
            self._spawn(node)
        self._save()
        try:
            self.wait_ready([n.node_id for n in self.nodes], timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM every node, SIGKILL whatever is left after `grace` s."""
        for pid in self.pids.values():
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for node_id, pid in list(self.pids.items()):
            if not self._wait_exit(node_id, pid, max(0.0, deadline - time.monotonic())):
                _signal(pid, signal.SIGKILL)
                self._wait_exit(node_id, pid, 5.0)
        self.pids.clear()
        self._procs.clear()
        (self.run_dir / STATE_FILE).unlink(missing_ok=True)

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node: no shutdown, like a crashed machine."""
        pid = self.pids.pop(node_id, None)
        if pid is None:
            raise NatsError(f"node {node_id} is not running")
        _signal(pid, signal.SIGKILL)
        self._wait_exit(node_id, pid, 10.0)
        self._procs.pop(node_id, None)
        self._save()

    def restart_node(self, node_id: int, timeout: float = 30.0) -> None:
        """Start a stopped node again on its own ports and data dir."""
        if node_id in self.pids:
            raise NatsError(f"node {node_id} is already running")
        self._spawn(next(n for n in self.nodes if n.node_id == node_id))
        self._save()
        self.wait_ready([node_id], timeout)

    def wait_ready(self, node_ids: list[int], timeout: float) -> None:
        """Until each node's /healthz says ok (JetStream enabled and current), within `timeout`."""
        deadline = time.monotonic() + timeout
        pending = set(node_ids)
        while time.monotonic() < deadline:
            for node_id, pid in self.pids.items():
                if not _alive(pid, self._procs.get(node_id)):
                    raise NatsError(f"node {node_id} exited early:\n{self.log_tail(node_id)}")
            pending = {n for n in pending if not self._healthy(n)}
            if not pending:
                return
            time.sleep(0.1)
        tails = "\n".join(self.log_tail(n) for n in sorted(pending))
        raise NatsError(f"NATS nodes {sorted(pending)} not ready after {timeout:.0f}s:\n{tails}")

    def _healthy(self, node_id: int) -> bool:
        node = next(n for n in self.nodes if n.node_id == node_id)
        url = f"http://127.0.0.1:{node.monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return bool(resp.status == 200)
        except OSError:  # refused while starting, 503 until JetStream is current
            return False

    def log_tail(self, node_id: int, lines: int = 30) -> str:
        path = self.run_dir / f"node-{node_id}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _args(self, node: Node) -> list[str]:
        args = [
            str(binary(self.version)),
            "-a", "127.0.0.1", "-p", str(node.port),
            "-m", str(node.monitor_port),  # the monitor listens on the -a address too
            "-js", "-sd", str(self.run_dir / f"data-{node.node_id}"),
            "-n", f"kbroker-nats-{node.node_id}",
        ]  # fmt: skip
        if len(self.nodes) > 1:
            routes = ",".join(f"nats://127.0.0.1:{n.cluster_port}" for n in self.nodes if n != node)
            args += [
                "--cluster_name", "kbroker",
                "--cluster", f"nats://127.0.0.1:{node.cluster_port}",
                "--routes", routes,
            ]  # fmt: skip
        return args

    def _spawn(self, node: Node) -> None:
        with open(self.run_dir / f"node-{node.node_id}.log", "ab") as log:
            # A new session: Ctrl-C on a test run must not reach the servers before we stop them.
            proc = subprocess.Popen(
                self._args(node), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._procs[node.node_id] = proc
        self.pids[node.node_id] = proc.pid

    def _save(self) -> None:
        state = {
            "version": self.version,
            "url": self.url,
            "nodes": [
                {"id": n.node_id, "port": n.port, "cluster_port": n.cluster_port,
                 "monitor_port": n.monitor_port, "pid": self.pids.get(n.node_id)}
                for n in self.nodes
            ],
        }  # fmt: skip
        tmp = self.run_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.run_dir / STATE_FILE)

    @classmethod
    def load(cls, run_dir: Path) -> NatsCluster:
        state: dict[str, Any] = json.loads((Path(run_dir) / STATE_FILE).read_text())
        c = cls(run_dir, nodes=len(state["nodes"]), version=state["version"])
        c.nodes = [
            Node(n["id"], n["port"], n["cluster_port"], n["monitor_port"]) for n in state["nodes"]
        ]
        c.pids = {n["id"]: n["pid"] for n in state["nodes"] if n["pid"] and _alive(n["pid"], None)}
        return c

    def _wait_exit(self, node_id: int, pid: int, timeout: float) -> bool:
        proc = self._procs.get(node_id)
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid, None):
                return True
            time.sleep(0.05)
        return not _alive(pid, None)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(0); /proc tells whether it already exited
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--version", default=NATS_VERSION, help="nats-server version (Go proxy)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build")
    sub.add_parser("fetch", help="the same as build (named like hack/kafka.py's step)")
    st = sub.add_parser("start")
    st.add_argument("--nodes", type=int, choices=(1, 3), default=1)
    st.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    st.add_argument("--foreground", action="store_true", help="run until Ctrl-C, then stop")
    st.add_argument("--timeout", type=float, default=30.0)
    sp = sub.add_parser("stop")
    sp.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    for name in ("kill-node", "start-node"):
        p = sub.add_parser(name)
        p.add_argument("node", type=int)
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args(argv)

    if args.cmd in ("build", "fetch"):
        build(args.version)
        return 0
    if args.cmd == "start":
        cluster = NatsCluster(args.dir, nodes=args.nodes, version=args.version)
        t0 = time.monotonic()
        url = cluster.start(timeout=args.timeout)
        print(url, flush=True)
        print(f"nats-server {args.version}: {args.nodes} node(s) up in "
              f"{time.monotonic() - t0:.1f}s, state in {cluster.run_dir / STATE_FILE}",
              file=sys.stderr)  # fmt: skip
        if args.foreground:
            _run_until_signal(cluster)
        return 0
    if not (args.dir / STATE_FILE).exists():
        print(f"no NATS state in {args.dir}", file=sys.stderr)
        return 0 if args.cmd == "stop" else 1
    cluster = NatsCluster.load(args.dir)
    if args.cmd == "stop":
        cluster.stop()
    elif args.cmd == "kill-node":
        cluster.kill_node(args.node)
    else:
        cluster.restart_node(args.node)
    return 0


def _run_until_signal(cluster: NatsCluster) -> None:
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop:
            if not any(_alive(pid, cluster._procs.get(n)) for n, pid in cluster.pids.items()):
                print("every NATS node exited", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
