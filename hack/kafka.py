"""A real Apache Kafka (KRaft) for tests and `make kafka`, built from Maven Central jars only.

Why this exists: the machines reach Maven Central but no Apache download mirror and no container
registry, so the broker tarball and images are out of reach. `org.apache.kafka:kafka_2.13` pulls in
every server module at runtime scope, so its dependency closure *is* a broker: we copy the jars
into `.cache/kafka-<ver>/libs` and run `kafka.Kafka` from them. docs/kafka.md records what running
this recipe taught us.

    hack/kafka.py fetch                                   jars into .cache/ (skipped when present)
    hack/kafka.py start [--nodes 1|3] [--dir D] [--foreground]
    hack/kafka.py stop [--dir D]
    hack/kafka.py kill-node N [--dir D]                   SIGKILL one node (fault tests)
    hack/kafka.py start-node N [--dir D]                  restart it on its data dir (no reformat)

Importable too: `KafkaCluster(run_dir, nodes=1).start()` returns the bootstrap servers; the pytest
fixtures in test/fixtures/kafka.py use that. Every node is a combined broker+controller on loopback
ports picked free per run, with a static voter set, so one cluster id formats all data dirs.

What it refuses to do: run anything but loopback listeners, reformat a data dir that exists, or wait
without a bound. Standard library only, plus confluent_kafka for the readiness check.
"""

from __future__ import annotations

import argparse
import base64
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
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KAFKA_VERSION = "4.3.1"
ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "hack" / "kafka" / "pom.xml"
LOG4J2 = ROOT / "hack" / "kafka" / "log4j2.properties"
DEFAULT_DIR = ROOT / ".run" / "kafka"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
STATE_FILE = "state.json"


class KafkaError(RuntimeError):
    """Fetching, formatting or starting the broker failed; the message carries the log tail."""


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    return ROOT / ".cache" / f"kafka-{version}" / "libs"


def fetch(version: str = KAFKA_VERSION, quiet: bool = False) -> Path:
    """Copy the broker's runtime jars from Maven Central; a no-op when they are already there."""
    dest = libs_dir(version)
    if (dest / f"kafka_2.13-{version}.jar").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Copy into a sibling temp dir and rename, so an interrupted fetch never looks complete.
    tmp = Path(tempfile.mkdtemp(prefix="libs-", dir=dest.parent))
    cmd = [
        "mvn", "-B", "-q", "-f", str(POM), DEPENDENCY_PLUGIN,
        f"-Dkafka.version={version}", "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise KafkaError(
            f"mvn copy-dependencies failed:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    if not quiet:
        jars = len(list(dest.glob("*.jar")))
        print(f"kafka {version}: {jars} jars in {dest} ({time.monotonic() - t0:.1f}s)")
    return dest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding: the form StorageTool expects.

    One id in 64 would start with "-", which StorageTool's argument parser reads as an option
    ("--cluster-id: expected one argument"); Kafka's own Uuid.randomUuid() redraws those too.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True, slots=True)
class Node:
    node_id: int
    port: int
    controller_port: int


def server_properties(node: Node, nodes: list[Node], data: Path) -> str:
    n = len(nodes)
    voters = ",".join(f"{m.node_id}@127.0.0.1:{m.controller_port}" for m in nodes)
    isr = 2 if n >= 3 else 1
    props = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": data,
        "num.partitions": 1,
        "default.replication.factor": n,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": n,
        # Few partitions for internal topics: creating the default 50 costs seconds on 2 cores.
        "offsets.topic.num.partitions": n,
        "transaction.state.log.replication.factor": n,
        "transaction.state.log.min.isr": isr,
        "transaction.state.log.num.partitions": n,
        "share.coordinator.state.topic.replication.factor": n,
        "share.coordinator.state.topic.min.isr": isr,
        "share.coordinator.state.topic.num.partitions": n,
        "group.initial.rebalance.delay.ms": 0,
        "num.network.threads": 2,
        "num.io.threads": 2,
        "num.recovery.threads.per.data.dir": 1,
        "background.threads": 2,
        "auto.create.topics.enable": "false",
        # A killed node must come back quickly in fault tests; the default waits are for prod.
        "controller.quorum.election.timeout.ms": 1000,
        "controller.quorum.fetch.timeout.ms": 2000,
        "broker.session.timeout.ms": 4000,
        "broker.heartbeat.interval.ms": 500,
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


class KafkaCluster:
    """One to three combined KRaft nodes under `run_dir`, each a `kafka.Kafka` JVM."""

    def __init__(
        self,
        run_dir: Path = DEFAULT_DIR,
        nodes: int = 1,
        version: str = KAFKA_VERSION,
        heap: str = "512m",
    ) -> None:
        if nodes not in (1, 3):
            raise ValueError("nodes must be 1 or 3")
        self.run_dir = Path(run_dir).resolve()
        self.version = version
        self.heap = heap
        self.nodes: list[Node] = []
        self.cluster_id = ""
        self.pids: dict[int, int] = {}
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._log_offsets: dict[int, int] = {}  # log size at each node's latest spawn
        self._count = nodes

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 90.0) -> str:
        """Format fresh data dirs, start every node, wait until all are in the cluster."""
        libs = fetch(self.version, quiet=True)
        if (self.run_dir / STATE_FILE).exists():
            KafkaCluster.load(self.run_dir).stop()  # a previous run left nodes behind
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        self.cluster_id = new_cluster_id()
        self.nodes = [Node(i, free_port(), free_port()) for i in range(1, self._count + 1)]
        for node in self.nodes:
            self._props(node).write_text(server_properties(node, self.nodes, self._data(node)))
        # Formatting is a JVM each (~2 s); run them side by side. One retry: a format failed once
        # in ~100 test-session starts on a loaded machine and its output was lost; it is now kept
        # in node-N.log.
        failed = self._format(libs, self.nodes, timeout)
        if failed:
            failed = self._format(libs, failed, timeout)
        if failed:
            n = failed[0].node_id
            raise KafkaError(f"format of node {n} failed:\n{self.log_tail(n)}")
        for node in self.nodes:
            self._spawn(node, libs)
        self._save()
        try:
            self.wait_ready([n.node_id for n in self.nodes], timeout)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every node (controlled shutdown), SIGKILL whatever is left after `grace` s."""
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
        """SIGKILL one node: no controlled shutdown, like a crashed machine."""
        pid = self.pids.pop(node_id, None)
        if pid is None:
            raise KafkaError(f"node {node_id} is not running")
        _signal(pid, signal.SIGKILL)
        self._wait_exit(node_id, pid, 10.0)
        self._procs.pop(node_id, None)
        self._save()

    def restart_node(self, node_id: int, timeout: float = 60.0) -> None:
        """Start a stopped node again on its own data dir and config (never reformatted)."""
        if node_id in self.pids:
            raise KafkaError(f"node {node_id} is already running")
        node = next(n for n in self.nodes if n.node_id == node_id)
        self._spawn(node, libs_dir(self.version))
        self._save()
        self.wait_ready([node_id], timeout)

    def wait_ready(self, node_ids: list[int], timeout: float) -> None:
        """Until each node logged "Kafka Server started" since its spawn and the cluster metadata
        lists it; bounded by `timeout`. Both, because a node killed a moment ago is still listed
        until its broker session expires, and the log line alone says nothing about the others."""
        from confluent_kafka.admin import AdminClient  # only needed here; fetch works without

        deadline = time.monotonic() + timeout
        # log_level 0: the refused connects while the JVM boots are expected, not worth printing.
        admin = AdminClient(
            {"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000, "log_level": 0}
        )
        pending = set(node_ids)
        while time.monotonic() < deadline:
            for node_id, pid in self.pids.items():
                if not _alive(pid, self._procs.get(node_id)):
                    raise KafkaError(f"node {node_id} exited early:\n{self.log_tail(node_id)}")
            pending = {n for n in pending if not self._logged_start(n)}
            if not pending:
                try:
                    listed = admin.describe_cluster(request_timeout=2).result(timeout=3).nodes
                    if set(node_ids) <= {n.id for n in listed}:
                        return
                except Exception:  # not up yet: any client error means "try again"
                    pass
            time.sleep(0.25)
        tails = "\n".join(self.log_tail(n) for n in self.pids)
        raise KafkaError(f"Kafka nodes {sorted(node_ids)} not up after {timeout:.0f}s:\n{tails}")

    def _logged_start(self, node_id: int) -> bool:
        path = self.run_dir / f"node-{node_id}.log"
        with open(path, "rb") as f:
            f.seek(self._log_offsets.get(node_id, 0))
            return b"Kafka Server started" in f.read()

    def log_tail(self, node_id: int, lines: int = 30) -> str:
        path = self.run_dir / f"node-{node_id}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # --- state file: lets a later `stop` / `kill-node` find the JVMs ------------------------------

    def _save(self) -> None:
        state = {
            "version": self.version,
            "cluster_id": self.cluster_id,
            "bootstrap": self.bootstrap,
            "heap": self.heap,
            "nodes": [
                {"id": n.node_id, "port": n.port, "controller_port": n.controller_port,
                 "pid": self.pids.get(n.node_id)}
                for n in self.nodes
            ],
        }  # fmt: skip
        tmp = self.run_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.run_dir / STATE_FILE)

    @classmethod
    def load(cls, run_dir: Path) -> KafkaCluster:
        state: dict[str, Any] = json.loads((Path(run_dir) / STATE_FILE).read_text())
        c = cls(run_dir, nodes=len(state["nodes"]), version=state["version"], heap=state["heap"])
        c.cluster_id = state["cluster_id"]
        c.nodes = [Node(n["id"], n["port"], n["controller_port"]) for n in state["nodes"]]
        c.pids = {n["id"]: n["pid"] for n in state["nodes"] if n["pid"] and _alive(n["pid"], None)}
        return c

    # --- helpers ----------------------------------------------------------------------------------

    def _format(self, libs: Path, nodes: list[Node], timeout: float) -> list[Node]:
        """Format the nodes' data dirs (in parallel); the nodes whose format failed."""
        procs = []
        for n in nodes:
            shutil.rmtree(self._data(n), ignore_errors=True)
            with open(self.run_dir / f"node-{n.node_id}.log", "ab") as log:
                procs.append(
                    subprocess.Popen(
                        [
                            *self._java(libs, "256m"),
                            "kafka.tools.StorageTool",
                            "format",
                            f"--cluster-id={self.cluster_id}",
                            "-c",
                            str(self._props(n)),
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        return [n for n, p in zip(nodes, procs, strict=True) if p.wait(timeout) != 0]

    def _props(self, node: Node) -> Path:
        return self.run_dir / f"node-{node.node_id}.properties"

    def _data(self, node: Node) -> Path:
        return self.run_dir / f"data-{node.node_id}"

    def _java(self, libs: Path, max_heap: str) -> list[str]:
        return [
            "java", "-Xms128m", f"-Xmx{max_heap}",
            "-XX:ActiveProcessorCount=2", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2}",
            "-cp", f"{libs}/*",  # Java expands dir/* itself: one argv entry, no shell globbing
        ]  # fmt: skip

    def _spawn(self, node: Node, libs: Path) -> None:
        with open(self.run_dir / f"node-{node.node_id}.log", "ab") as log:
            self._log_offsets[node.node_id] = log.tell()
            # A new session: Ctrl-C on a test run must not reach the JVMs before we stop them.
            proc = subprocess.Popen(
                [*self._java(libs, self.heap), "kafka.Kafka", str(self._props(node))],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._procs[node.node_id] = proc
        self.pids[node.node_id] = proc.pid

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
            time.sleep(0.1)
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
    # A zombie still answers kill(0); /proc tells whether it already exited.
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--version", default=KAFKA_VERSION, help="Kafka version (Maven Central)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch")
    st = sub.add_parser("start")
    st.add_argument("--nodes", type=int, choices=(1, 3), default=1)
    st.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    st.add_argument("--foreground", action="store_true", help="run until Ctrl-C, then stop")
    st.add_argument("--timeout", type=float, default=90.0)
    sp = sub.add_parser("stop")
    sp.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    for name in ("kill-node", "start-node"):
        p = sub.add_parser(name)
        p.add_argument("node", type=int)
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args(argv)

    if args.cmd == "fetch":
        fetch(args.version)
        return 0
    if args.cmd == "start":
        cluster = KafkaCluster(args.dir, nodes=args.nodes, version=args.version)
        t0 = time.monotonic()
        bootstrap = cluster.start(timeout=args.timeout)
        print(bootstrap, flush=True)
        print(f"kafka {args.version}: {args.nodes} node(s) up in {time.monotonic() - t0:.1f}s, "
              f"state in {cluster.run_dir / STATE_FILE}", file=sys.stderr)  # fmt: skip
        if args.foreground:
            _run_until_signal(cluster)
        return 0
    if not (args.dir / STATE_FILE).exists():
        print(f"no Kafka state in {args.dir}", file=sys.stderr)
        return 0 if args.cmd == "stop" else 1
    cluster = KafkaCluster.load(args.dir)
    if args.cmd == "stop":
        cluster.stop()
    elif args.cmd == "kill-node":
        cluster.kill_node(args.node)
    else:
        cluster.restart_node(args.node)
    return 0


def _run_until_signal(cluster: KafkaCluster) -> None:
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop:
            if not any(_alive(pid, cluster._procs.get(n)) for n, pid in cluster.pids.items()):
                print("every Kafka node exited", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
