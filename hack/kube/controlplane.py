"""Start and stop a real, throw-away Kubernetes control plane: etcd + kube-apiserver on loopback.

Why: the controller's job is to talk to a real API server (watches, status subresource, CRD schema
validation, RBAC), and a fake would hide exactly the behaviour we need to test. There is no
kube-controller-manager and no kubelet: Deployments never get pods, namespaces never finish
terminating, ownerReferences are not garbage-collected. CRDs, status, watch, SSA and RBAC all work.

One implementation, two users: the pytest plugin (test/fixtures/kube.py) and `bash hack/kube.sh
start|stop` for humans and Tilt. Standard library only, so any Python 3.11 can run it.

Ports are chosen free per start (bind port 0, close, hand the number on); the tiny race with another
process is accepted because a clash shows up at once as a dead process with its log attached.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = ROOT / ".cache" / "bin"
DEFAULT_CRDS = ROOT / "config" / "300-crds.yaml"
TOKEN = "kbroker-admin-token"  # only ever valid for this throw-away loopback apiserver
CRD_NAMES = ("brokers.eventing.knative.dev", "triggers.eventing.knative.dev")


class ControlPlaneError(RuntimeError):
    """The control plane did not come up (or down) in time; the message carries the logs' tails."""


@dataclass(frozen=True, slots=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    kn: Path

    @classmethod
    def find(cls, bin_dir: Path = DEFAULT_BIN) -> Binaries:
        """Binaries built by `hack/kube.sh build`; kubectl from there or else from PATH."""
        kubectl = bin_dir / "kubectl"
        if not kubectl.exists():
            found = shutil.which("kubectl")
            kubectl = Path(found) if found else kubectl
        found_bins = cls(bin_dir / "etcd", bin_dir / "kube-apiserver", kubectl, bin_dir / "kn")
        missing = [
            str(p)
            for p in (found_bins.etcd, found_bins.kube_apiserver, kubectl, found_bins.kn)
            if not p.exists()
        ]
        if missing:
            raise ControlPlaneError(
                f"missing {', '.join(missing)}: run `bash hack/kube.sh build` first"
            )
        return found_bins


@dataclass(frozen=True, slots=True)
class ControlPlane:
    """A running control plane; everything it owns lives under `dir`."""

    dir: Path
    server: str
    kubeconfig: Path
    token: str
    binaries: Binaries

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 60.0) -> str:
        """Run kubectl against this apiserver; raise with its stderr when it fails."""
        return _run(
            [str(self.binaries.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            stdin,
            timeout,
        )

    def stop(self, timeout: float = 15.0) -> None:
        stop(self.dir, timeout)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run(cmd: list[str], stdin: str | None, timeout: float) -> str:
    proc = subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
        )
    return proc.stdout


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    # A new session: `hack/kube.sh start` returns while these keep running, and a Ctrl-C in the
    # terminal that ran it does not take the cluster down half-way.
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


Procs = dict[str, tuple[subprocess.Popen[bytes], Path]]


def _wait(what: str, ready: Callable[[], bool], deadline: float, procs: Procs) -> None:
    while True:
        for name, (proc, log) in procs.items():
            if proc.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with {proc.returncode} while waiting for {what}:\n{_tail(log)}"
                )
        if ready():
            return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n} ---\n{_tail(log)}" for n, (_, log) in procs.items())
            raise ControlPlaneError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.2)


def _etcd_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return bool(json.load(resp).get("health") == "true")
    except (OSError, ValueError):
        return False


def _apiserver_ready(server: str, token: str) -> bool:
    # The serving certificate exists only once the apiserver runs; kubectl verifies TLS later.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(f"{server}/readyz", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


def _kubeconfig(server: str, ca: Path, token: str) -> str:
    # JSON is valid YAML; the context is named so that Tilt's allow_k8s_contexts() can name it.
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kbroker-dev",
                    "cluster": {"server": server, "certificate-authority": str(ca)},
                }
            ],
            "users": [{"name": "kbroker-admin", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "kbroker-dev",
                    "context": {
                        "cluster": "kbroker-dev",
                        "user": "kbroker-admin",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "kbroker-dev",
        },
        indent=2,
    )


def _prepare(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "certs").mkdir(exist_ok=True)
    if not (run_dir / "sa.key").exists():
        subprocess.run(
            ["openssl", "genrsa", "-out", str(run_dir / "sa.key"), "2048"],
            check=True,
            capture_output=True,
            timeout=60,
        )
    # One static token in system:masters: full rights under RBAC, no client certificates to mint.
    (run_dir / "tokens.csv").write_text(
        f'{TOKEN},kbroker-admin,kbroker-admin-uid,"system:masters"\n'
    )


def start(
    run_dir: Path,
    binaries: Binaries,
    crds: Path | None = DEFAULT_CRDS,
    port: int | None = None,
    timeout: float = 90.0,
) -> ControlPlane:
    """Start etcd and kube-apiserver under `run_dir`, wait for /readyz, apply the CRDs."""
    run_dir = run_dir.resolve()
    _prepare(run_dir)
    deadline = time.monotonic() + timeout
    etcd_port, peer_port, api_port = free_port(), free_port(), port or free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    etcd_cmd = [
        str(binaries.etcd),
        "--name=default",
        f"--data-dir={run_dir / 'etcd'}",
        f"--listen-client-urls={etcd_url}",
        f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=default={peer_url}",
        "--unsafe-no-fsync=true",  # throw-away data: durability costs seconds per test run
        "--log-level=warn",
    ]
    procs: Procs = {}
    procs["etcd"] = (_spawn(etcd_cmd, run_dir / "etcd.log"), run_dir / "etcd.log")
    _record(run_dir, procs)
    try:
        _wait("etcd /health", lambda: _etcd_healthy(etcd_url), deadline, procs)
        server = f"https://127.0.0.1:{api_port}"
        api_cmd = [
            str(binaries.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            # Else the apiserver looks for a default route, which a network-less sandbox lacks.
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={run_dir / 'certs'}",
            f"--service-account-issuer={server}",
            f"--service-account-key-file={run_dir / 'sa.key'}",
            f"--service-account-signing-key-file={run_dir / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--token-auth-file={run_dir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            # No kube-controller-manager creates namespaces' default ServiceAccount.
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            "--profiling=false",
            "-v=0",
        ]
        procs["kube-apiserver"] = (
            _spawn(api_cmd, run_dir / "kube-apiserver.log"),
            run_dir / "kube-apiserver.log",
        )
        _record(run_dir, procs)
        _wait("kube-apiserver /readyz", lambda: _apiserver_ready(server, TOKEN), deadline, procs)
        kubeconfig = run_dir / "kubeconfig"
        kubeconfig.write_text(_kubeconfig(server, run_dir / "certs" / "apiserver.crt", TOKEN))
        plane = ControlPlane(run_dir, server, kubeconfig, TOKEN, binaries)
        if crds is not None:
            apply_crds(plane, crds, max(5.0, deadline - time.monotonic()))
        return plane
    except BaseException:
        stop(run_dir)
        raise


def apply_crds(plane: ControlPlane, crds: Path, timeout: float) -> None:
    plane.kubectl("apply", "-f", str(crds), timeout=timeout)
    names = [f"crd/{n}" for n in CRD_NAMES]
    plane.kubectl(
        "wait",
        "--for=condition=Established",
        f"--timeout={int(timeout)}s",
        *names,
        timeout=timeout + 5,
    )


def _record(run_dir: Path, procs: Procs) -> None:
    (run_dir / "pids").write_text(
        "".join(f"{name} {proc.pid}\n" for name, (proc, _) in procs.items())
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this very process still "exists": reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


def stop(run_dir: Path, timeout: float = 15.0) -> None:
    """Stop what `start` recorded in run_dir/pids: apiserver, then etcd; SIGKILL on timeout."""
    pid_file = run_dir / "pids"
    if not pid_file.exists():
        return
    pids = [int(line.split()[1]) for line in pid_file.read_text().splitlines() if line.strip()]
    for pid in reversed(pids):  # recorded etcd first, so the apiserver goes first
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid) and time.monotonic() < deadline + 5:
                time.sleep(0.1)
    pid_file.unlink()


def running(run_dir: Path) -> bool:
    pid_file = run_dir / "pids"
    if not pid_file.exists():
        return False
    pids = [int(line.split()[1]) for line in pid_file.read_text().splitlines() if line.strip()]
    return len(pids) == 2 and all(_alive(p) for p in pids)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="throw-away etcd + kube-apiserver on loopback")
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, default=ROOT / ".run" / "kube")
    parser.add_argument("--bin", type=Path, default=DEFAULT_BIN)
    parser.add_argument(
        "--port", type=int, default=None, help="apiserver port (default: a free one)"
    )
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args(argv)
    try:
        if args.command == "stop":
            stop(args.dir)
            return 0
        if running(args.dir) and (args.dir / "kubeconfig").exists():
            print(args.dir.resolve() / "kubeconfig")
            return 0
        stop(args.dir)  # leftovers of a half-dead earlier start
        plane = start(args.dir, Binaries.find(args.bin), port=args.port, timeout=args.timeout)
    except ControlPlaneError as err:
        print(f"kube: {err}", file=sys.stderr)
        return 1
    print(plane.kubeconfig)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
