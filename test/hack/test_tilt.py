"""`tilt ci` on the Tiltfile's process mode, with the real Tilt that hack/tilt.sh builds.

Process mode needs neither Docker nor a kubelet: Kafka, etcd + kube-apiserver, the manifests, the
controller, ingress and filter run as local processes, and `tilt ci` exits 0 only once every
server passes its readiness probe and the unit and integration test resources have passed. The
fast check of the same file without Tilt is test_tiltfile.py.

Skipped when .cache/bin/tilt is missing: a cold build of Tilt takes longer than the rest of
`make test`, so it is built on request (`make tilt`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TILT = ROOT / ".cache" / "bin" / "tilt"
RUN = ROOT / ".run" / "tilt"
PORTS = (8080, 8081, 8082)  # fixed in the Tiltfile, as a developer's loop wants them


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.kube
@pytest.mark.timeout(1200)
def test_tilt_ci_brings_process_mode_up_and_passes_its_tests() -> None:
    if not TILT.exists():
        pytest.skip("no .cache/bin/tilt (build it with `make tilt`)")
    if not all(_free(p) for p in PORTS):
        pytest.skip(f"ports {PORTS} of the Tiltfile are in use on this machine")
    shutil.rmtree(RUN, ignore_errors=True)
    try:
        proc = subprocess.run(
            [str(TILT), "ci", "--port", "0"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1100,
        )
    finally:
        # `hack/kube.sh start` leaves the control plane running by design (Tilt's `kube` resource
        # is a one-shot cmd), and a Kafka node was seen outliving its serve_cmd after Tilt ended.
        subprocess.run(["bash", "hack/kube.sh", "stop", "--dir", str(RUN / "kube")], cwd=ROOT)
        subprocess.run(
            [sys.executable, "hack/kafka.py", "stop", "--dir", str(RUN / "kafka")], cwd=ROOT
        )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "SUCCESS. All workloads are healthy." in out
