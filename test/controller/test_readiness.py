"""controller/readiness: a line when a Broker or Trigger turns Ready / not Ready, none per reload.

The table drives ReadinessLog directly; the last test runs the real folder watcher on a temporary
folder: reloads that leave a Trigger's readiness alone write no line.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from kbroker.controller import compiler, files, readiness
from kbroker.core import logs

LOGGER = "kbroker.controller.readiness"

T_READY = readiness.Readiness("Trigger", "ns", "t", "True", broker="b")
T_NO_SUB = readiness.Readiness(
    "Trigger", "ns", "t", "False", "Unable to get the Subscriber's URI", "not found", "b"
)
T_NO_SUB_OTHER_MESSAGE = readiness.Readiness(
    "Trigger", "ns", "t", "False", "Unable to get the Subscriber's URI", "still not found", "b"
)
T_NO_BROKER = readiness.Readiness("Trigger", "ns", "t", "False", "BrokerDoesNotExist")
B_READY = readiness.Readiness("Broker", "ns", "b", "True")

READY, NOT_READY = "trigger ready", "trigger not ready"

# (name, passes of objects, messages logged per pass)
CASES = [
    ("first sight is a change", [[T_READY, B_READY]], [[READY, "broker ready"]]),
    ("unchanged passes are silent", [[T_READY], [T_READY], [T_READY]], [[READY], [], []]),
    (
        "ready -> not ready -> ready",
        [[T_READY], [T_NO_SUB], [T_READY]],
        [[READY], [NOT_READY], [READY]],
    ),
    ("a new reason is a change", [[T_NO_SUB], [T_NO_BROKER]], [[NOT_READY], [NOT_READY]]),
    ("a new message alone is not", [[T_NO_SUB], [T_NO_SUB_OTHER_MESSAGE]], [[NOT_READY], []]),
    ("removed, then back: a change again", [[T_READY], [], [T_READY]], [[READY], [], [READY]]),
]


@pytest.mark.parametrize("passes,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_logs_changes_only(
    passes: list[list[readiness.Readiness]],
    expected: list[list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    rl = readiness.ReadinessLog()
    got = []
    for objects in passes:
        caplog.clear()
        rl.observe(objects)
        got.append([r.getMessage() for r in caplog.records if r.name == LOGGER])
    assert got == expected


def test_line_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    readiness.ReadinessLog().observe([T_NO_SUB, B_READY])
    [t, b] = caplog.records
    assert t.levelno == logging.WARNING
    assert logs.fields_of(t) == {
        "kind": "Trigger",
        "namespace": "ns",
        "trigger": "t",
        "broker": "b",
        "ready": "False",
        "reason": "Unable to get the Subscriber's URI",
        "detail": "not found",
    }
    assert b.levelno == logging.INFO
    assert logs.fields_of(b) == {"kind": "Broker", "namespace": "ns", "broker": "b"}


def test_from_k8s_reads_the_ready_condition() -> None:
    st = {
        "conditions": [
            {"type": "BrokerReady", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "R", "message": "m"},
        ]
    }
    assert readiness.from_k8s("Trigger", "ns", "t", st, "b") == readiness.Readiness(
        "Trigger", "ns", "t", "False", "R", "m", "b"
    )
    assert readiness.from_k8s("Broker", "ns", "b", {}).status == "Unknown"


BROKER = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
"""

TRIGGER = """
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: t
spec:
  broker: default
  subscriber:
    uri: http://127.0.0.1:9000/t
"""


async def test_folder_reloads_log_readiness_on_change_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    results: asyncio.Queue[compiler.CompileResult] = asyncio.Queue()
    source = files.FolderSource(
        tmp_path, compiler.Environment("http://127.0.0.1:8080"), results.put, 0.02
    )
    task = asyncio.create_task(source.run())

    async def step(name: str, text: str | None) -> list[tuple[str, object]]:
        caplog.clear()
        path = tmp_path / name
        if text is None:
            path.unlink()
        else:
            path.write_text(text)
        await asyncio.wait_for(results.get(), 2.0)
        await asyncio.sleep(0.01)  # the watcher logs right after on_update returns
        return [
            (r.getMessage(), getattr(r, "reason", None)) for r in caplog.records if r.name == LOGGER
        ]

    try:
        assert await step("t.yaml", TRIGGER) == [("trigger not ready", "BrokerDoesNotExist")]
        assert await step("other.yaml", "# nothing\n") == []  # a reload, same readiness
        assert await step("b.yaml", BROKER) == [("broker ready", None), ("trigger ready", None)]
        assert await step("other.yaml", "# still nothing\n") == []
        assert await step("b.yaml", None) == [("trigger not ready", "BrokerDoesNotExist")]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
