"""The config folder misbehaves while events wait for a subscriber that is down: nothing is lost.

    producer --202--> kbroker run (embedded log) --refused--> subscriber (down, then up)
                          ^ --config (polled): fd exhaustion / renamed away / replaced by a file /
                          |                    broker removed for real / removed and restored

The ledger, per test: sent, acknowledged (202), delivered (distinct ids), duplicates, lost
(acknowledged but never delivered). A folder that cannot be read must keep the last good
configuration, and a Broker removed for real keeps its events for the removal grace period.
Permission errors (EACCES) are not caused here: the tests run as root, where `chmod 000` does not
stop reads; test/controller/test_files_errors.py injects them through the watcher's seam.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
from dataclasses import dataclass, field
from pathlib import Path

from e2e import knative_yaml as ky
from fixtures.broker import BrokerProcess, StartBroker, make_event
from fixtures.subscriber import DownThenUp, Sink

EVENTS = 20
# Retries outlast every outage below; the backoff stays short so delivery resumes quickly.
DELIVERY = {"retry": 1000, "backoffPolicy": "linear", "backoffDelay": "PT0.1S"}
STORE = "knative-broker-default-default.db"  # the embedded log file of Broker default/default


@dataclass
class Ledger:
    sent: list[str] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)

    def report(self, sink: Sink) -> tuple[set[str], str]:
        delivered = set(sink.ids())
        lost = self.acked - delivered
        line = (
            f"sent={len(self.sent)} acked={len(self.acked)} delivered={len(delivered)} "
            f"duplicates={len(sink.ids()) - len(delivered)} lost={len(lost)}"
        )
        print(line)
        return lost, line


async def waiting_events(proc: BrokerProcess, ledger: Ledger, prefix: str) -> None:
    """Send events the down subscriber cannot take yet; each must be acknowledged."""
    for i in range(EVENTS):
        ev_id = f"{prefix}-{i}"
        ledger.sent.append(ev_id)
        resp = await proc.send(make_event(ev_id), headers={"kbroker-durability": "all"})
        if resp.status_code == 202:
            ledger.acked.add(ev_id)
    assert len(ledger.acked) == EVENTS


async def all_delivered(proc: BrokerProcess, sink: Sink, ledger: Ledger, timeout: float) -> None:
    async def done() -> bool:
        return ledger.acked <= set(sink.ids())

    with contextlib.suppress(TimeoutError):  # the ledger below says what is missing
        await proc.until(done, timeout, "acknowledged events not delivered")
    lost, line = ledger.report(sink)
    assert not lost, f"{line}; lost e.g. {sorted(lost)[:5]}; log: {proc.log_text()}"
    assert set(sink.ids()) <= set(ledger.sent)


async def log_shows(proc: BrokerProcess, *needles: str, timeout: float = 15.0) -> str:
    """Wait for a log line holding any of `needles`; return the first needle seen."""
    seen: list[str] = []

    async def found() -> bool:
        text = proc.log_path.read_text(errors="replace")
        seen[:] = [n for n in needles if n in text]
        return bool(seen)

    await proc.until(found, timeout, f"none of {needles} in the log")
    return seen[0]


FD_LIMIT = 160  # the kbroker process's RLIMIT_NOFILE in the fd-exhaustion test


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


async def test_fd_exhaustion_keeps_every_broker_and_its_events(
    start_broker: StartBroker, down_sinks: DownThenUp
) -> None:
    sink = down_sinks.sink("s")
    proc = await start_broker(
        {"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url, delivery=DELIVERY))},
        preexec_fn=_low_fd_limit,
    )
    await proc.wait_ready_object("Trigger", "t")
    ledger = Ledger()
    await waiting_events(proc, ledger, "fd")
    # Fill the process's descriptor table with idle connections: listing the folder then fails
    # with EMFILE (the old watcher took that for an empty folder and deleted the broker's log).
    held: list[socket.socket] = []
    try:
        for _ in range(FD_LIMIT + 40):
            held.append(socket.create_connection(("127.0.0.1", proc.port), timeout=5))
        seen = await log_shows(proc, "Too many open files", "brokers=0")
        await asyncio.sleep(1.5)  # several polls under pressure
    finally:
        for s in held:
            s.close()
    await proc.wait_ready()
    await down_sinks.up()
    await all_delivered(proc, sink, ledger, 30.0)
    assert seen == "Too many open files", "the watcher never reported the EMFILE episode"
    await log_shows(proc, "readable again")  # the next poll after the pressure went away
    assert (await proc.status())["config"]["readable"] is True


async def test_folder_renamed_away_then_back_keeps_the_events(
    start_broker: StartBroker, down_sinks: DownThenUp, tmp_path: Path
) -> None:
    sink = down_sinks.sink("s")
    proc = await start_broker(
        {"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url, delivery=DELIVERY))}
    )
    await proc.wait_ready_object("Trigger", "t")
    ledger = Ledger()
    await waiting_events(proc, ledger, "mv")
    aside = tmp_path / "config-aside"
    proc.config_dir.rename(aside)
    try:
        await log_shows(proc, "config folder does not exist", "brokers=0")
        ready = await proc.client.get(f"{proc.base}/readyz")
        status = await proc.status()
        await asyncio.sleep(1.0)
    finally:
        aside.rename(proc.config_dir)
    await down_sinks.up()
    await all_delivered(proc, sink, ledger, 30.0)
    # Brokers kept serving the last good configuration: ready, saying why it was degraded.
    assert ready.status_code == 200 and "degraded" in ready.text, ready.text
    assert status["config"]["readable"] is False and status["config"]["errors"]
    assert [b["metadata"]["name"] for b in status["brokers"]] == ["default"]
    await log_shows(proc, "readable again")


async def test_folder_replaced_by_a_file_keeps_the_events(
    start_broker: StartBroker, down_sinks: DownThenUp, tmp_path: Path
) -> None:
    sink = down_sinks.sink("s")
    proc = await start_broker(
        {"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url, delivery=DELIVERY))}
    )
    await proc.wait_ready_object("Trigger", "t")
    ledger = Ledger()
    await waiting_events(proc, ledger, "file")
    aside = tmp_path / "config-aside"
    proc.config_dir.rename(aside)
    proc.config_dir.write_text("not a folder\n")
    try:
        await log_shows(proc, "config folder is not a folder", "brokers=0")
        await asyncio.sleep(1.0)
    finally:
        proc.config_dir.unlink()
        aside.rename(proc.config_dir)
    await down_sinks.up()
    await all_delivered(proc, sink, ledger, 30.0)
    await log_shows(proc, "readable again")


async def test_a_broker_removed_for_real_is_deleted_after_the_grace_with_a_warning(
    start_broker: StartBroker, down_sinks: DownThenUp
) -> None:
    sink = down_sinks.sink("s")
    proc = await start_broker(
        {"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url, delivery=DELIVERY))},
        extra_args=["--removal-grace", "1"],
    )
    await proc.wait_ready_object("Trigger", "t")
    ledger = Ledger()
    await waiting_events(proc, ledger, "rm")
    assert (proc.data_dir / STORE).exists()
    proc.remove("o.yaml")

    async def removed() -> bool:
        return not (await proc.status())["brokers"]

    await proc.until(removed, 15, "removed Broker still listed")
    # Within the grace the events are still on disk.
    assert (proc.data_dir / STORE).exists()
    await log_shows(proc, "unconsumed events dropped")
    line = next(
        ln for ln in proc.log_path.read_text().splitlines() if "unconsumed events dropped" in ln
    )
    assert "WARNING" in line and "broker default/default" in line
    assert f" {EVENTS} unconsumed events dropped" in line, line
    assert not (proc.data_dir / STORE).exists()


async def test_a_broker_removed_and_restored_within_the_grace_keeps_its_events(
    start_broker: StartBroker, down_sinks: DownThenUp
) -> None:
    sink = down_sinks.sink("s")
    objects = ky.dump(ky.broker(), ky.trigger("t", sink.url, delivery=DELIVERY))
    proc = await start_broker({"o.yaml": objects}, extra_args=["--removal-grace", "30"])
    await proc.wait_ready_object("Trigger", "t")
    ledger = Ledger()
    await waiting_events(proc, ledger, "back")
    proc.remove("o.yaml")  # e.g. moved out of the folder, or an editor saving in two steps

    async def removed() -> bool:
        status = await proc.status()
        return not status["brokers"] and not status["triggers"]

    await proc.until(removed, 15, "removed objects still listed")
    kept = (await proc.status())["config"]["removedBrokersKept"]
    await asyncio.sleep(1.0)
    proc.write("o.yaml", objects)
    await proc.wait_ready_object("Trigger", "t")
    await down_sinks.up()
    await all_delivered(proc, sink, ledger, 30.0)
    assert kept == ["default/default"]
    assert "back within the grace period" in proc.log_text()
