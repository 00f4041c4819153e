"""controller/files: the standalone folder watcher, against a real temporary folder.

tmp dir/*.yaml --(poll 20 ms)--> FolderSource --compile--> on_update(result) --> asyncio.Queue
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kbroker.controller import compiler, files

BASE = "http://127.0.0.1:8080"
TESTDATA = Path(__file__).parent / "testdata"

BROKER = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
"""


def trigger(name: str = "t", broker: str = "default", type_: str = "a") -> str:
    return f"""
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: {name}
spec:
  broker: {broker}
  filter:
    attributes:
      type: {type_}
  subscriber:
    uri: http://127.0.0.1:9000/{name}
"""


class Watched:
    """A running FolderSource whose results arrive on a queue."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.results: asyncio.Queue[compiler.CompileResult] = asyncio.Queue()
        self.source = files.FolderSource(
            folder, compiler.Environment(BASE), self.results.put, poll_interval=0.02
        )

    async def next(self) -> compiler.CompileResult:
        return await asyncio.wait_for(self.results.get(), timeout=2.0)

    def write(self, name: str, text: str) -> None:
        (self.folder / name).write_text(text)


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[Watched]:
    w = Watched(tmp_path)
    task = asyncio.create_task(w.source.run())
    try:
        yield w
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_picks_up_added_changed_and_removed_files(watched: Watched) -> None:
    empty = await watched.next()
    assert empty.contract.brokers == () and empty.contract.generation == 1
    watched.write("broker.yaml", BROKER)
    r = await watched.next()
    assert [b.name for b in r.contract.brokers] == ["default"]
    assert r.contract.generation == 2
    watched.write("trigger.yml", trigger())
    r = await watched.next()
    (t,) = r.contract.triggers
    assert (t.name, t.generation, t.filters[0].attributes) == ("t", 1, (("type", "a"),))
    watched.write("trigger.yml", trigger(type_="changed"))
    r = await watched.next()
    (t,) = r.contract.triggers
    assert (t.generation, t.filters[0].attributes) == (2, (("type", "changed"),))
    assert r.statuses[("Trigger", "default", "t")].generation == 2
    assert r.contract.generation == 4
    (watched.folder / "trigger.yml").unlink()
    r = await watched.next()
    assert r.contract.triggers == () and ("Trigger", "default", "t") not in r.statuses
    assert watched.source.latest is r
    assert watched.results.empty()


async def test_bad_yaml_is_reported_and_other_files_keep_working(
    watched: Watched, caplog: pytest.LogCaptureFixture
) -> None:
    await watched.next()
    watched.write("broker.yaml", BROKER)
    watched.write("t.yaml", trigger())
    r = await watched.next()
    assert len(r.contract.triggers) == 1
    caplog.set_level(logging.WARNING, logger="kbroker.controller.files")
    watched.write("t.yaml", trigger() + "\n  bad: [indent\n")
    watched.write("new.yaml", "key: [unclosed\n")
    r = await watched.next()
    bad = {p.source: p.reason for p in r.problems if p.severity == "error"}
    assert set(bad) == {str(watched.folder / "t.yaml"), str(watched.folder / "new.yaml")}
    assert bad[str(watched.folder / "t.yaml")].endswith("(keeping its previous objects)")
    assert bad[str(watched.folder / "new.yaml")].startswith("invalid YAML")
    # The last good version of t.yaml is still in force, and the Broker is untouched.
    assert [t.name for t in r.contract.triggers] == ["t"]
    assert any("new.yaml: invalid YAML" in rec.getMessage() for rec in caplog.records)


async def test_immutable_update_keeps_the_accepted_version(watched: Watched) -> None:
    await watched.next()
    watched.write("objects.yaml", BROKER + "---" + trigger())
    r = await watched.next()
    assert r.contract.triggers[0].broker == "default"
    watched.write("objects.yaml", BROKER + "---" + trigger(broker="other", type_="b"))
    r = await watched.next()
    (t,) = r.contract.triggers
    assert (t.broker, t.filters[0].attributes) == ("default", (("type", "a"),))
    (p,) = [p for p in r.problems if p.severity == "error"]
    assert (p.kind, p.name) == ("Trigger", "t")
    assert p.reason == "Immutable fields changed: spec.broker: keeping the previous version"
    # Deleting the object lifts the constraint, as `kubectl delete` then `apply` would.
    watched.write("objects.yaml", BROKER)
    r = await watched.next()
    assert r.contract.triggers == ()
    watched.write("objects.yaml", BROKER + "---" + trigger(broker="other"))
    r = await watched.next()
    assert r.statuses[("Trigger", "default", "t")].condition("BrokerReady") is not None
    assert not [p for p in r.problems if p.severity == "error"]


async def test_other_kinds_are_warnings(watched: Watched, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kbroker.controller.files")
    await watched.next()
    watched.write("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
    r = await watched.next()
    (p,) = r.problems
    assert p.severity == "warning" and "unsupported kind v1/Service" in p.reason
    assert any(
        rec.levelno == logging.WARNING and "v1/Service" in rec.getMessage()
        for rec in caplog.records
    )


async def test_async_and_sync_callbacks(tmp_path: Path) -> None:
    seen: list[int] = []

    def sync_cb(r: compiler.CompileResult) -> None:
        seen.append(r.contract.generation)

    source = files.FolderSource(tmp_path, compiler.Environment(BASE), sync_cb, 0.01)
    task = asyncio.create_task(source.run())
    for _ in range(200):
        if seen:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [1]


def test_load_once_reads_only_yaml_files_directly_in_the_folder(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(BROKER)
    (tmp_path / "notes.txt").write_text(trigger("txt"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t.yaml").write_text(trigger("nested"))
    (tmp_path / "t.yml").write_text(trigger("top") + "\n---\n" + trigger("second") + "\n---\n")
    r = files.load_once(tmp_path, compiler.Environment(BASE))
    assert [t.name for t in r.contract.triggers] == ["second", "top"]
    assert r.contract.generation == 1


def test_load_once_on_the_testdata_fixtures() -> None:
    r = files.load_once(TESTDATA, compiler.Environment(BASE))
    assert not [p for p in r.problems if p.severity == "error"], r.problems
    assert {b.key for b in r.contract.brokers} == {
        "default/default",
        "default/br",
        "team/orders",
        "team/external",
    }
    assert len(r.contract.triggers) == 6


def test_missing_folder_is_a_problem(tmp_path: Path) -> None:
    r = files.load_once(tmp_path / "nope", compiler.Environment(BASE))
    assert [str(p) for p in r.problems] == [f"{tmp_path / 'nope'}: config folder does not exist"]


def test_refresh_only_recompiles_on_change(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(BROKER)
    source = files.FolderSource(tmp_path, compiler.Environment(BASE), lambda _: None)
    first = source.refresh()
    assert first is not None and source.refresh() is None
    (tmp_path / "b.yaml").write_text(BROKER + "  namespace: other\n")
    second = source.refresh()
    assert second is not None and second.contract.brokers[0].namespace == "other"
    assert second.contract.generation == 2


async def test_a_failing_callback_does_not_stop_the_watcher(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    async def flaky(r: compiler.CompileResult) -> None:
        calls.append(r.contract.generation)
        if len(calls) == 1:
            raise RuntimeError("data plane refused the contract")

    source = files.FolderSource(tmp_path, compiler.Environment(BASE), flaky, 0.01)
    task = asyncio.create_task(source.run())
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if calls:
                break
        (tmp_path / "b.yaml").write_text(BROKER)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(calls) == 2:
                break
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert calls == [1, 2]
    assert any("config reload failed" in rec.getMessage() for rec in caplog.records)
