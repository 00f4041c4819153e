"""CPU time and memory of the processes under test, read from /proc.

Why: events/s alone hides who paid for them. On a 2-core machine the generator, the broker and
the receiver compete for the same cores, so every result carries CPU seconds per 1,000 events for
each of them (utime + stime from /proc/<pid>/stat) and their peak RSS (VmHWM). A process tree
(the broker with ingress worker processes) is summed over its live descendants. Linux only; on
other systems the numbers are reported as missing rather than invented.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class Sample:
    """CPU seconds (user + system) and memory of one process tree at one instant."""

    cpu_seconds: float
    rss_kb: int
    hwm_kb: int
    pids: int


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    return text[text.rfind(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def memory_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in kB."""
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    rss = hwm = 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return rss, hwm


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it."""
    children: dict[int, list[int]] = {}
    try:
        entries = list(_PROC.iterdir())
    except OSError:
        return [pid]
    for entry in entries:
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        cur = todo.pop()
        out.append(cur)
        todo.extend(children.get(cur, ()))
    return out


def sample(pid: int, tree: bool = True) -> Sample | None:
    """CPU and memory of `pid` (and its descendants when `tree`); None once it has gone."""
    pids = descendants(pid) if tree else [pid]
    cpu = 0.0
    rss = hwm = 0
    alive = 0
    for p in pids:
        c = cpu_seconds(p)
        m = memory_kb(p)
        if c is None or m is None:
            continue
        alive += 1
        cpu += c
        rss += m[0]
        hwm += m[1]
    if alive == 0:
        return None
    return Sample(cpu_seconds=cpu, rss_kb=rss, hwm_kb=hwm, pids=alive)


def listener_pid(port: int) -> int | None:
    """The process listening on TCP `port` (IPv4 or IPv6), or None when none of ours is.

    How a run finds the backend server (Kafka's JVM, nats-server, RabbitMQ's beam) from the URL
    it was given, so that the server's CPU per event is reported next to the broker's."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local address "IP:PORT" in hex, state 0A = LISTEN, inode in column 10
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(fields[9])
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # another user's process, or gone
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    return int(entry.name)
            except OSError:
                continue
    return None


def machine_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU jiffies of the whole machine, from the first line of /proc/stat.

    The difference over a step, minus what our own processes used, is the CPU other processes
    took meanwhile: on a shared machine that number says whether a result can be trusted.
    """
    try:
        with (_PROC / "stat").open() as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user/nice
    return total - idle, total


def busy_cores(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Average cores busy machine-wide between two `machine_jiffies` readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)
