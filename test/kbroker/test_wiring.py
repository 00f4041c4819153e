"""Start-up failures of the real `kbroker` processes: one line naming what to fix, exit code != 0.

Each case runs the CLI as a subprocess against a real obstacle (a port another socket holds, a
data folder under a regular file, a config folder that is missing) and reads its stderr: no
Python traceback, the port or folder named, a non-zero exit.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbroker import wiring


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port: int = s.getsockname()[1]
        yield port


def kbroker(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kbroker", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


PORT_CASES = [
    ("run", ["run", "--config", "cfg", "--data", "data"]),
    ("ingress", ["ingress", "--contract", "c.json", "--data", "data"]),
    ("filter", ["filter", "--contract", "c.json", "--data", "data"]),
    ("controller", ["controller", "--kubeconfig", "missing", "--data", "data"]),
]


@pytest.mark.parametrize(("kind", "args"), PORT_CASES, ids=[c[0] for c in PORT_CASES])
def test_busy_port_is_one_line(tmp_path: Path, busy_port: int, kind: str, args: list[str]) -> None:
    (tmp_path / "cfg").mkdir()
    done = kbroker(*args, "--port", str(busy_port), cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"kbroker: cannot listen on 127.0.0.1:{busy_port}: address already in use"
    )


FOLDER_CASES = [
    ("config missing", ["--config", "nope", "--data", "data"], "config folder nope"),
    ("config is a file", ["--config", "file", "--data", "data"], "config folder file"),
    ("data under a file", ["--config", "cfg", "--data", "file/data"], "data folder file/data"),
]


@pytest.mark.parametrize(("case", "args", "named"), FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_unusable_folder_is_one_line(
    tmp_path: Path, case: str, args: list[str], named: str
) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "file").write_text("not a folder")
    done = kbroker("run", *args, "--port", "0", cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert line.startswith(f"kbroker: {named}: "), line


def test_bind_names_the_address(busy_port: int) -> None:
    with pytest.raises(wiring.StartupError, match=f"127.0.0.1:{busy_port}: address already"):
        wiring.bind("127.0.0.1", busy_port)
    sock = wiring.bind("127.0.0.1", 0)
    try:
        assert sock.getsockname()[1] != 0
    finally:
        sock.close()
