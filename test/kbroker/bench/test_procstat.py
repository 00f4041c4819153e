"""/proc readings of this very process and a child it starts."""

from __future__ import annotations

import os
import subprocess
import sys

from kbroker.bench import machine, procstat


def test_sample_sees_cpu_memory_and_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        me = os.getpid()
        assert child.pid in procstat.descendants(me)
        alone = procstat.sample(me, tree=False)
        tree = procstat.sample(me)
        assert alone is not None and tree is not None
        assert alone.cpu_seconds > 0
        assert alone.pids == 1
        assert tree.pids >= 2
        assert tree.rss_kb > alone.rss_kb > 0
        assert alone.hwm_kb >= alone.rss_kb
    finally:
        child.kill()
        child.wait()
    assert procstat.sample(child.pid) is None  # gone: no figure rather than a made-up one


def test_machine_busy_cores_is_within_the_machine() -> None:
    before = procstat.machine_jiffies()
    sum(i * i for i in range(300_000))
    busy = procstat.busy_cores(before, procstat.machine_jiffies())
    cores = os.cpu_count() or 1
    assert busy is None or 0.0 <= busy <= cores
    assert procstat.busy_cores(None, before) is None


def test_machine_facts_name_the_machine_and_versions() -> None:
    facts = machine.facts()
    assert facts["cores"] == os.cpu_count()
    assert facts["cpu_model"]
    assert facts["versions"]["python"] == sys.version.split()[0]
    assert "aiohttp" in facts["versions"]
