"""The embedded log's file faults, end to end through the real `kbroker run`.

    events ──POST──> kbroker run --data D ──> sinks
                      stop / kill -9, then damage D's files, then start again

- a damaged database: that broker is not Ready (with the reason) and answers 503, the other
  broker on the same kbroker answers 202 and delivers; `kbroker log check` exits 1 naming it;
  after `kbroker log salvage` the broker serves again;
- a log damaged while kbroker runs: /status shows its Broker not Ready at once, no config change;
- a truncated WAL after kill -9: a log line names the missing offsets;
- a full disk (an 8 MiB tmpfs under the data folder): ingress answers 507, the subscriber's
  position commits still succeed, retention frees the space and ingress answers 202 again without
  a restart; every event answered 202 is delivered (ledger); at durability `none` the events
  lost after their 202 are logged with their ids and counted in kbroker_events_lost_total.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from e2e import knative_yaml as ky
from fixtures.broker import BrokerProcess, make_event
from fixtures.subscriber import SinkServer
from kbroker.core import events

pytestmark = pytest.mark.slow


class NotReadyBroker(BrokerProcess):
    """Starts without waiting for /readyz 200: a damaged log keeps it at 503 on purpose."""

    async def wait_ready(self, timeout: float = 30.0) -> None:
        return None


@pytest.fixture
async def procs() -> AsyncIterator[list[BrokerProcess]]:
    started: list[BrokerProcess] = []
    try:
        yield started
    finally:
        for p in started:
            await p.close()


def log_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kbroker", "log", *args], capture_output=True, text=True, timeout=60
    )


def damage_middle(path: Path) -> None:
    pages = path.stat().st_size // 4096
    with path.open("r+b") as f:
        f.seek((pages // 2) * 4096)
        f.write(b"\xff" * 64)


async def post(proc: BrokerProcess, broker: str, ev_id: str, size: int = 1000) -> int:
    resp = await proc.send(make_event(ev_id, data=b"x" * size), broker=broker)
    return resp.status_code


async def test_damaged_log_takes_only_its_broker_out_until_salvaged(
    tmp_path: Path, sinks: SinkServer, procs: list[BrokerProcess]
) -> None:
    bad_sink, good_sink = sinks.sink("bad"), sinks.sink("good")
    config = ky.dump(
        ky.broker("bad"),
        ky.trigger("tb", bad_sink.url, broker="bad"),
        ky.broker("good"),
        ky.trigger("tg", good_sink.url, broker="good"),
    )
    proc = BrokerProcess(tmp_path)
    procs.append(proc)
    proc.write("o.yaml", config)
    await proc.start()
    await proc.wait_ready_object("Trigger", "tb")
    for i in range(300):
        assert await post(proc, "bad", f"b{i}") == 202
    await bad_sink.wait_for(300)
    await proc.stop()
    db = proc.data_dir / "knative-broker-default-bad.db"
    damage_middle(db)

    damaged = NotReadyBroker(tmp_path)
    procs.append(damaged)
    await damaged.start()

    async def broker_refused() -> bool:
        cond = await damaged.condition("Broker", "bad")
        return cond is not None and cond["status"] == "False"

    await damaged.until(broker_refused, 30, "the damaged broker stayed Ready")
    cond = await damaged.condition("Broker", "bad")
    assert cond is not None and "damaged" in cond.get("message", ""), cond
    ready = await damaged.client.get(f"{damaged.base}/readyz")
    assert ready.status_code == 503 and "default/bad" in ready.text
    assert await post(damaged, "bad", "late") == 503
    await damaged.wait_ready_object("Trigger", "tg")
    assert await post(damaged, "good", "g1") == 202
    assert [e.id for e in await good_sink.wait_for(1)] == ["g1"]
    await damaged.stop()

    found = log_cmd("check", "--data", str(proc.data_dir))
    assert found.returncode == 1 and "knative-broker-default-bad.db: DAMAGED" in found.stdout
    assert "knative-broker-default-good.db: OK" in found.stdout
    salvaged = log_cmd("salvage", "--data", str(proc.data_dir), "default/bad")
    assert salvaged.returncode == 0 and "recovered" in salvaged.stdout, salvaged

    again = BrokerProcess(tmp_path)
    procs.append(again)
    await again.start()  # /readyz 200 again
    await again.wait_ready_object("Broker", "bad")
    await again.wait_ready_object("Trigger", "tb")
    assert await post(again, "bad", "after") == 202
    await bad_sink.wait_for(301)
    assert "after" in bad_sink.ids()


async def test_damage_found_while_running_shows_in_status_without_a_config_change(
    tmp_path: Path, sinks: SinkServer, procs: list[BrokerProcess]
) -> None:
    sink = sinks.sink("s")
    proc = BrokerProcess(tmp_path)
    procs.append(proc)
    proc.write("o.yaml", ky.dump(ky.broker("bad"), ky.trigger("tb", sink.url, broker="bad")))
    await proc.start()
    await proc.wait_ready_object("Trigger", "tb")
    assert await post(proc, "bad", "ok-1") == 202
    await sink.wait_for(1)
    generation = (await proc.status())["generation"]
    # A row the dispatcher cannot decode, written by another process: the running dispatcher
    # reads it next and finds the log damaged, with no restart and no configuration change.
    with sqlite3.connect(proc.data_dir / "knative-broker-default-bad.db", timeout=10) as conn:
        conn.execute(
            "INSERT INTO events (key, attrs, data, arrival, size)"
            " VALUES (NULL, x'00ff', NULL, 0, 2)"
        )

    async def broker_refused() -> bool:
        cond = await proc.condition("Broker", "bad")
        return cond is not None and cond["status"] == "False"

    await proc.until(broker_refused, 30, "the Broker stayed Ready in /status")
    cond = await proc.condition("Broker", "bad")
    assert cond is not None and "damaged" in cond.get("message", ""), cond
    assert cond.get("reason") == "StorageNotReady"
    assert (await proc.status())["generation"] == generation  # nothing was reconfigured
    ready = await proc.client.get(f"{proc.base}/readyz")
    assert ready.status_code == 503 and "default/bad" in ready.text


async def test_truncated_wal_is_named_in_the_log(
    tmp_path: Path, sinks: SinkServer, procs: list[BrokerProcess]
) -> None:
    sink = sinks.sink("s")
    proc = BrokerProcess(tmp_path)
    procs.append(proc)
    proc.write("o.yaml", ky.dump(ky.broker(), ky.trigger("t", sink.url)))
    await proc.start()
    await proc.wait_ready_object("Trigger", "t")
    for i in range(40):
        assert await post(proc, "default", f"w{i}") == 202
    proc.kill()  # the last transactions are only in the WAL
    wal = proc.data_dir / "knative-broker-default-default.db-wal"
    assert wal.stat().st_size > 32 + 8 * (24 + 4096), "the events should be in the WAL"
    with wal.open("r+b") as f:
        f.truncate(32 + 4 * (24 + 4096))

    again = NotReadyBroker(tmp_path)
    procs.append(again)
    await again.start()

    async def named() -> bool:
        return "are missing" in again.log_text()

    await again.until(named, 30, "no log line named the lost offsets")
    assert "offsets" in again.log_text() and "-40 are missing" in again.log_text()
    assert await post(again, "default", "late") == 503


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


async def test_full_disk_recovers_without_restart_and_loses_nothing(
    tmp_path: Path, sinks: SinkServer, procs: list[BrokerProcess]
) -> None:
    sink = sinks.sink("s")
    with small_disk(tmp_path / "disk", "8m") as disk:
        proc = BrokerProcess(tmp_path)
        proc.data_dir = disk / "data"
        procs.append(proc)
        proc.write("o.yaml", ky.dump(ky.broker(), ky.trigger("t", sink.url)))
        await proc.start()
        await proc.wait_ready_object("Trigger", "t")
        accepted: list[str] = []
        codes: dict[int, int] = {}
        async with httpx.AsyncClient(timeout=10.0) as client:

            async def send(ev_id: str) -> int:
                headers, body = events.encode_binary(make_event(ev_id, data=b"x" * 4000))
                resp = await client.post(proc.broker_url(), headers=headers, content=body)
                codes[resp.status_code] = codes.get(resp.status_code, 0) + 1
                if resp.status_code == 202:
                    accepted.append(ev_id)
                return resp.status_code

            n = 0
            while codes.get(507, 0) < 5 and n < 20_000:  # fill the disk through ingress
                results = await asyncio.gather(*(send(f"f{n + k}") for k in range(8)))
                n += 8
                assert set(results) <= {202, 507}, codes
            assert codes.get(507, 0) >= 5, f"the disk never filled: {codes}"
            full_at = len(accepted)
            # The subscriber consumes; its commits must succeed and retention must free space.
            deadline = asyncio.get_running_loop().time() + 60
            status = 0
            while asyncio.get_running_loop().time() < deadline:
                status = await send(f"r{n}")
                n += 1
                if status == 202:
                    break
                await asyncio.sleep(0.2)
            files = {f.name: f.stat().st_size for f in proc.data_dir.iterdir()}
            assert status == 202, (
                f"ingress never came back from 507 without a restart: {codes}; {files};"
                f" delivered {len(sink.ids())}"
            )
            for i in range(20):
                assert await send(f"after{i}") == 202
        missing = set(accepted)
        deadline = asyncio.get_running_loop().time() + 60
        while missing and asyncio.get_running_loop().time() < deadline:
            missing -= set(sink.ids())
            await asyncio.sleep(0.2)
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
        assert full_at > 100
        log = proc.log_text()
        await proc.stop()
        assert "appends get 507" in log and "appends resume" in log, log


async def test_full_disk_at_durability_none_logs_and_counts_what_is_lost(
    tmp_path: Path, procs: list[BrokerProcess]
) -> None:
    """`none` answers 202 before the write: when the disk fills, the loss is the contract, but
    it must be visible (an ERROR line with ids, and the kbroker_events_lost_total counter)."""
    with small_disk(tmp_path / "disk", "8m") as disk:
        proc = BrokerProcess(tmp_path)
        proc.data_dir = disk / "data"
        procs.append(proc)
        proc.write("o.yaml", ky.dump(ky.broker()))  # no Trigger: nothing frees the space
        await proc.start()
        await proc.wait_ready_object("Broker", "default")

        async def lost() -> float:
            text = (await proc.client.get(f"{proc.base}/metrics")).text
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("kbroker_events_lost_total{") and 'reason="disk_full"' in line
            )

        accepted = 0
        for n in range(4000):
            headers, body = events.encode_binary(make_event(f"n{n}", data=b"x" * 4000))
            resp = await proc.client.post(
                proc.broker_url(),
                headers=[*headers, ("kbroker-durability", "none")],
                content=body,
            )
            assert resp.status_code in (202, 503), resp.text
            accepted += resp.status_code == 202
            if n % 100 == 99 and await lost() > 0:
                break
        await asyncio.sleep(0.5)  # the writer has applied what was queued
        counted = await lost()
        assert 0 < counted <= accepted
        await proc.stop()  # the writer logs what it has not logged yet
        log = proc.log_text()
        lines = [line for line in log.splitlines() if "LOST" in line]
        assert lines and all("knative-broker-default-default.db" in line for line in lines), log
        assert "first ids n" in lines[0]
        assert sum(int(line.split("LOST ")[1].split()[0]) for line in lines) >= counted
