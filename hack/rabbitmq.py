"""A private RabbitMQ node for tests and `make rabbitmq`, from Debian's `rabbitmq-server` package.

Why this exists: the machines reach Debian's archive but no container registry, so the node runs
from the packaged Erlang release. The package's own system service must never run: `fetch`
installs with a policy-rc.d that denies every service start, and nothing here calls systemctl or
service. Every node this script starts is private to its run folder:

- its own node name (`kbroker-<random>@localhost`) and Erlang cookie (HOME is the run folder);
- its own ports on 127.0.0.1: AMQP, Erlang distribution, and its own epmd port, so it never meets
  another node or an epmd someone else started;
- its own data, logs, rabbitmq.conf and enabled-plugins file (no plugins: management is off).

    hack/rabbitmq.py fetch                        apt-get install rabbitmq-server (if missing)
    hack/rabbitmq.py start [--nodes 1|3] [--dir D] [--foreground]   prints the AMQP URL(s)
    hack/rabbitmq.py stop [--dir D]
    hack/rabbitmq.py kill [--dir D]                SIGKILL the node (a cluster's: --dir D/node-N)
    hack/rabbitmq.py restart [--dir D]             start it again on its data (same ports, name)

Importable too: `RabbitNode(run_dir).start()` returns the AMQP URL, `RabbitCluster(run_dir).start()`
three nodes' URLs (one cluster: the nodes share a private epmd port and cookie, and find each other
by classic-config peer discovery); test/fixtures/rabbitmq.py uses both.

What it refuses to do: listen on anything but loopback, start the packaged system service, or
wait without a bound. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".run" / "rabbitmq"
# The release's own scripts: /usr/sbin/rabbitmq-server is a wrapper that switches to the
# `rabbitmq` user and its HOME, which would share the system cookie and folders.
SBIN = Path("/usr/lib/rabbitmq/bin")
STATE_FILE = "state.json"
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


class RabbitError(RuntimeError):
    """Installing or starting the node failed; the message carries the log tail."""


def installed() -> bool:
    return (SBIN / "rabbitmq-server").exists()


def fetch(quiet: bool = False) -> None:
    """Install Debian's rabbitmq-server without starting its service; a no-op when present."""
    if installed():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # invoke-rc.d asks policy-rc.d before starting a service; exit 101 means "denied". Keep a
    # policy the machine already has, otherwise put ours in place for the install only.
    ours = not POLICY_RC_D.exists()
    if ours:
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        for cmd in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "rabbitmq-server"],
        ):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RabbitError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}{proc.stderr}")
    finally:
        if ours:
            POLICY_RC_D.unlink(missing_ok=True)
    if not quiet:
        print("rabbitmq-server installed (its system service was not started)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RabbitNode:
    """One private RabbitMQ node under `run_dir`."""

    def __init__(self, run_dir: Path = DEFAULT_DIR) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.nodename = ""
        self.port = 0
        self.dist_port = 0
        self.epmd_port = 0
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        """The environment of the node and of every CLI call that talks to it."""
        d = self.run_dir
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(d / "home"),  # the Erlang cookie lives here
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
            "RABBITMQ_LOGS": str(d / "log" / "node.log"),
            # Distribution (node-to-CLI) traffic on loopback too, not every interface.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> str:
        """A fresh node: new folders, name, cookie and ports; returns the AMQP URL once ready."""
        self.prepare()
        self._spawn()
        self._save()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def prepare(
        self,
        nodename: str = "",
        epmd_port: int = 0,
        cookie: str = "",
        peers: tuple[str, ...] = (),
    ) -> None:
        """Lay out a fresh run folder. A cluster's nodes share `epmd_port` and `cookie` and list
        each other as `peers` (classic-config peer discovery); a lone node draws its own."""
        if not installed():
            raise RabbitError("rabbitmq-server is not installed: run `hack/rabbitmq.py fetch`")
        if (self.run_dir / STATE_FILE).exists():
            RabbitNode.load(self.run_dir).stop()  # a previous run left a node behind
        shutil.rmtree(self.run_dir, ignore_errors=True)
        for sub in ("home", "mnesia", "log"):
            (self.run_dir / sub).mkdir(parents=True)
        self.nodename = nodename or f"kbroker-{secrets.token_hex(4)}@localhost"
        self.port, self.dist_port = free_port(), free_port()
        self.epmd_port = epmd_port or free_port()
        cookie_file = self.run_dir / "home" / ".erlang.cookie"
        cookie_file.write_text(cookie or secrets.token_hex(16).upper())
        cookie_file.chmod(0o400)
        (self.run_dir / "enabled_plugins").write_text("[].\n")
        (self.run_dir / "rabbitmq-env.conf").write_text("")
        (self.run_dir / "advanced.config").write_text("[].\n")
        conf = [
            "loopback_users = none",
            # Test machines have small, busy disks: a fixed floor, not one relative to RAM.
            "disk_free_limit.absolute = 50MB",
            "vm_memory_high_watermark.relative = 0.6",
            "log.file.level = info",
            "log.console = false",
        ]
        if peers:
            conf.append("cluster_formation.peer_discovery_backend = classic_config")
            conf += [
                f"cluster_formation.classic_config.nodes.{i} = {p}" for i, p in enumerate(peers, 1)
            ]
        (self.run_dir / "rabbitmq.conf").write_text("\n".join([*conf, ""]))

    def restart(self, timeout: float = 90.0) -> str:
        """Start the node again on its own data, name, cookie and ports (after `kill`)."""
        if self.pid is not None and _alive(self.pid, self._proc):
            raise RabbitError("the node is already running")
        self._spawn()
        self._save()
        self.wait_ready(timeout)
        return self.url

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after `grace` s; then the private epmd."""
        if self.pid is not None:
            _signal(self.pid, signal.SIGTERM)
            if not self._wait_exit(grace):
                _signal(self.pid, signal.SIGKILL)
                self._wait_exit(5.0)
        self.pid, self._proc = None, None
        self._stop_epmd()
        (self.run_dir / STATE_FILE).unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the node: no clean shutdown, like a crashed machine. epmd stays up."""
        if self.pid is None:
            raise RabbitError("the node is not running")
        _signal(self.pid, signal.SIGKILL)
        self._wait_exit(10.0)
        self.pid, self._proc = None, None
        self._save()

    def wait_ready(self, timeout: float) -> None:
        """Until `rabbitmq-diagnostics check_running` passes and the AMQP port takes connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid is not None and not _alive(self.pid, self._proc):
                raise RabbitError(f"the node exited early:\n{self.log_tail()}")
            check = subprocess.run(
                [str(SBIN / "rabbitmq-diagnostics"), "-q", "-n", self.nodename, "check_running"],
                env=self.env(),
                capture_output=True,
                timeout=max(5.0, deadline - time.monotonic()),
                check=False,
            )
            if check.returncode == 0 and _port_open(self.port):
                return
            time.sleep(0.5)
        raise RabbitError(f"RabbitMQ not up after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for path in (self.run_dir / "stdout.log", self.run_dir / "log" / "node.log"):
            if path.exists():
                out.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out)

    # --- internals ------------------------------------------------------------------------------

    def _spawn(self) -> None:
        out = open(self.run_dir / "stdout.log", "ab")  # noqa: SIM115 - the child owns it
        self._proc = subprocess.Popen(
            [str(SBIN / "rabbitmq-server")],
            env=self.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal is ours to forward, not theirs
        )
        out.close()
        self.pid = self._proc.pid

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid is None or not _alive(self.pid, self._proc):
                return True
            time.sleep(0.1)
        return False

    def _stop_epmd(self) -> None:
        # Our epmd listens on our port only: asking it to stop touches no one else's.
        if not self.epmd_port:
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["epmd", "-port", str(self.epmd_port), "-kill"],
                env=self.env(),
                capture_output=True,
                timeout=5,
                check=False,
            )

    def _save(self) -> None:
        state = {
            "nodename": self.nodename,
            "port": self.port,
            "dist_port": self.dist_port,
            "epmd_port": self.epmd_port,
            "pid": self.pid,
            "url": self.url,
        }
        tmp = self.run_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.run_dir / STATE_FILE)

    @classmethod
    def load(cls, run_dir: Path) -> RabbitNode:
        node = cls(run_dir)
        state = json.loads((node.run_dir / STATE_FILE).read_text())
        node.nodename = state["nodename"]
        node.port, node.dist_port = state["port"], state["dist_port"]
        node.epmd_port, node.pid = state["epmd_port"], state["pid"]
        return node


class RabbitCluster:
    """Three (or N) private nodes on loopback forming one cluster: one epmd port and one cookie of
    their own, classic-config peer discovery. Node 1 boots first, so the others join it rather
    than racing to form clusters of their own."""

    def __init__(self, run_dir: Path = DEFAULT_DIR, nodes: int = 3) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.nodes = [RabbitNode(self.run_dir / f"node-{i}") for i in range(1, nodes + 1)]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start(self, timeout: float = 180.0) -> list[str]:
        tag, epmd, cookie = secrets.token_hex(4), free_port(), secrets.token_hex(16).upper()
        names = tuple(f"kbroker-{tag}-{i}@localhost" for i in range(1, len(self.nodes) + 1))
        for node, name in zip(self.nodes, names, strict=True):
            node.prepare(nodename=name, epmd_port=epmd, cookie=cookie, peers=names)
        deadline = time.monotonic() + timeout
        try:
            first, rest = self.nodes[0], self.nodes[1:]
            first._spawn()
            first._save()
            first.wait_ready(deadline - time.monotonic())
            for node in rest:
                node._spawn()
                node._save()
            for node in rest:
                node.wait_ready(max(1.0, deadline - time.monotonic()))
            self.wait_clustered(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self.urls

    def wait_clustered(self, timeout: float) -> None:
        """Until node 1 sees every node running in its cluster."""
        first = self.nodes[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = subprocess.run(
                [str(SBIN / "rabbitmqctl"), "-q", "-n", first.nodename, "cluster_status",
                 "--formatter", "json"],
                env=first.env(), capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            with contextlib.suppress(ValueError, KeyError):
                running = set(json.loads(proc.stdout)["running_nodes"])
                if running >= {n.nodename for n in self.nodes}:
                    return
            time.sleep(0.5)
        raise RabbitError(f"cluster did not form in {timeout:.0f}s:\n{first.log_tail()}")

    def stop(self, grace: float = 20.0) -> None:
        # The shared epmd goes with the last node: stop() of each node asks it to quit.
        for node in reversed(self.nodes):
            node.stop(grace)


def _signal(pid: int, sig: int) -> None:
    # The server script execs into beam, which starts its own children (epmd aside): signal the
    # process group the node leads, so no erl_child_setup or inet_gethost is left behind.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _alive(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie left by a parent that died: /proc says so.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return True


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1.0):
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch")
    for name in ("start", "stop", "kill", "restart"):
        p = sub.add_parser(name)
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR)
        if name == "start":
            p.add_argument("--foreground", action="store_true")
            p.add_argument("--nodes", type=int, choices=(1, 3), default=1)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "fetch":
            fetch()
            return 0
        if args.cmd == "start" and args.nodes == 3:
            cluster = RabbitCluster(args.dir, nodes=3)
            print(",".join(cluster.start()), flush=True)
            if args.foreground:
                _run_until_signal(cluster.nodes[0], cluster.stop)
            return 0
        if args.cmd == "start":
            node = RabbitNode(args.dir)
            print(node.start(), flush=True)
            if args.foreground:
                _run_until_signal(node, node.stop)
            return 0
        members = sorted(Path(args.dir).glob(f"node-*/{STATE_FILE}"), reverse=True)
        if args.cmd == "stop" and members and not (Path(args.dir) / STATE_FILE).exists():
            for state in members:  # a cluster's folder: each node's own
                RabbitNode.load(state.parent).stop()
            return 0
        if not (Path(args.dir) / STATE_FILE).exists():
            print(f"no node state in {args.dir}", file=sys.stderr)
            return 1
        node = RabbitNode.load(args.dir)
        if args.cmd == "stop":
            node.stop()
        elif args.cmd == "kill":
            node.kill()
        else:
            print(node.restart(), flush=True)
    except RabbitError as exc:
        print(f"rabbitmq: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_until_signal(node: RabbitNode, stop_all: Callable[[], None]) -> None:
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop and node.pid is not None and _alive(node.pid, node._proc):
            time.sleep(0.5)
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
