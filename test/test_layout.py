"""The test tree's own rules: where tests live, and that the markers select what they promise.

Tests mirror the modules they test (test/<package>/test_<module>.py, test/hack/ for hack/); the
root holds only the shared wiring and the whole-project checks. `-m "not kafka"` is how a machine
without Java runs the suite, so it must deselect every test that would start a Kafka server,
including the Kafka half of tests parametrized over both channels.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TEST = Path(__file__).resolve().parent
ROOT_FILES = {"conftest.py", "test_architecture.py", "test_layout.py", "test_packaging.py"}
KAFKA_FIXTURES = {"kafka_bootstrap", "kafka_single", "kafka_cluster3"}

# Runs in a child pytest (collection only) and prints each selected test that would need Kafka.
_COLLECT = """
import sys
import pytest

class Report:
    def pytest_collection_finish(self, session):
        kafka = set(sys.argv[1].split(","))
        for item in session.items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            if kafka & set(item.fixturenames) or params.get("broker_channel") == "kafka":
                print("NEEDS KAFKA", item.nodeid)
        print("SELECTED", len(session.items))

sys.exit(pytest.main(["--collect-only", "-q", "-m", "not kafka", sys.argv[2]], plugins=[Report()]))
"""


def test_root_holds_only_wiring_and_project_checks() -> None:
    files = {p.name for p in TEST.iterdir() if p.is_file() and p.suffix == ".py"}
    assert files == ROOT_FILES


def test_not_kafka_deselects_every_test_that_starts_kafka() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _COLLECT, ",".join(sorted(KAFKA_FIXTURES)), str(TEST)],
        capture_output=True,
        text=True,
        cwd=TEST.parent,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    selected = [line for line in proc.stdout.splitlines() if line.startswith("SELECTED ")]
    assert selected and int(selected[0].split()[1]) > 100  # the collection really ran
    assert [line for line in proc.stdout.splitlines() if line.startswith("NEEDS KAFKA")] == []
