"""`kbroker log check|salvage` on real damaged files, run as the real command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fixtures import channel_conformance as conformance
from kbroker.core import contract
from kbroker.core.channels import _sqlite_check as check
from kbroker.core.channels.embedded import EmbeddedChannel, db_path
from kbroker.core.settings import EmbeddedSettings

ALL = contract.Durability.ALL
EARLIEST = contract.StartFrom.EARLIEST


def broker(name: str) -> contract.Broker:
    return contract.Broker(
        "ns", name, f"uid-{name}", "http://x/", topic=f"knative-broker-ns-{name}"
    )


def kbroker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kbroker", "log", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def fill(data: Path, b: contract.Broker, n: int, committed: int = 0) -> None:
    ch = EmbeddedChannel(EmbeddedSettings(data_dir=data), retention_interval=3600)
    await ch.start()
    sub = ch.subscribe(b, conformance.make_trigger(b, EARLIEST))
    for i in range(n):
        await ch.append(b, [conformance.envelope(f"{b.name}-{i}", size=1000)], ALL)
    if committed:
        await sub.commit(0, committed)
    await ch.close()


def damage_middle(path: Path) -> None:
    page = 4096
    pages = path.stat().st_size // page
    with path.open("r+b") as f:
        f.seek((pages // 2) * page)
        f.write(b"\xff" * 64)


async def read_back(data: Path, b: contract.Broker) -> list[int]:
    ch = EmbeddedChannel(EmbeddedSettings(data_dir=data), retention_interval=3600)
    await ch.start()
    await ch.ensure_broker(b)  # raises if the log is still refused
    sub = ch.subscribe(b, conformance.make_trigger(b, EARLIEST))
    offsets: list[int] = []
    while batch := await sub.fetch(1000, 0.2):
        offsets += [r.offset for r in batch]
    await ch.append(b, [conformance.envelope("after-salvage")], ALL)
    offsets += [r.offset for r in await sub.fetch(10, 1.0)]
    await ch.close()
    return offsets


async def test_check_names_the_damaged_broker_and_salvage_brings_it_back(tmp_path: Path) -> None:
    good, bad = broker("good"), broker("bad")
    await fill(tmp_path, good, 50)
    await fill(tmp_path, bad, 300, committed=10)
    damage_middle(db_path(tmp_path, bad))

    every = kbroker("check", "--data", str(tmp_path))
    assert every.returncode == 1, every.stderr
    assert re.search(r"knative-broker-ns-bad\.db: DAMAGED", every.stdout), every.stdout
    assert "knative-broker-ns-good.db: OK" in every.stdout
    one = kbroker("check", "--data", str(tmp_path), "ns/good")
    assert one.returncode == 0 and "ns/good" in one.stdout and "OK" in one.stdout
    assert kbroker("check", "--data", str(tmp_path), "ns/missing").returncode == 2

    done = kbroker("salvage", "--data", str(tmp_path), "ns/bad")
    assert done.returncode == 0, done.stderr
    found = re.search(r"recovered (\d+) events", done.stdout)
    assert found is not None, done.stdout
    recovered = int(found.group(1))
    lost = re.search(r"lost (\d+) events: offsets (.*)", done.stdout)
    assert lost is not None, done.stdout
    assert recovered + int(lost.group(1)) == 300, done.stdout  # every offset accounted for
    assert 0 < recovered < 300
    copies = list(tmp_path.glob("knative-broker-ns-bad.db.damaged-*"))
    assert [c.name for c in copies if not c.name.endswith("-wal")], "the damaged file is kept"

    assert kbroker("check", "--data", str(tmp_path), "ns/bad").returncode == 0
    offsets = await read_back(tmp_path, bad)
    assert len(offsets) == recovered + 1
    assert offsets == sorted(offsets) and offsets[-1] == 301, "offsets kept, none reused"
    assert check.read_marker(db_path(tmp_path, bad)) == 301
