"""Machine facts and versions recorded with every run.

Why: a number without the machine and the software that produced it cannot be compared or
reproduced. Every JSON report embeds this block; docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

_LIBS = (
    "kbroker",
    "aiohttp",
    "uvicorn",
    "httptools",
    "uvloop",
    "starlette",
    "orjson",
    "confluent-kafka",
    "opentelemetry-sdk",
    "rich",
    "matplotlib",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total_kb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for lib in _LIBS:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages: a busy machine explains noisy figures."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def facts() -> dict[str, Any]:
    return {
        "load_average": load_average(),
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_kb": memory_total_kb(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "implementation": platform.python_implementation(),
        "versions": versions(),
    }
