"""Run mypy (strict) over the kbroker import namespace as it installs.

The top-level folders (core/, ingress/, filter/, controller/) install as kbroker.core, ... through
setuptools' package-dir mapping, which mypy cannot follow. This script lays out the same namespace
as a tree of symlinks under build/typecheck/ (from pyproject.toml's mapping, so there is one
source of truth) and type-checks it together with the tests and scripts. Errors are reported with
the real paths rewritten back, so an editor can jump to them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def layout() -> Path:
    """Build .cache/typecheck/kbroker: every mapped package folder linked at its dotted place."""
    mapping: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]["package-dir"]
    top = TREE / "kbroker"
    if TREE.exists():
        for link in sorted(TREE.rglob("*"), reverse=True):
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.is_dir():
                link.rmdir()
    top.mkdir(parents=True)
    own = ROOT / mapping["kbroker"]
    mapped = {name.removeprefix("kbroker.") for name in mapping if name != "kbroker"}
    for entry in own.iterdir():
        if entry.name != "__pycache__" and entry.name not in mapped:
            (top / entry.name).symlink_to(entry)
    for name in mapped:
        (top / name).symlink_to(ROOT / mapping[f"kbroker.{name}"])
    return top


def main(argv: list[str]) -> int:
    layout()
    env = dict(os.environ, MYPYPATH=f"{TREE}{os.pathsep}{ROOT / 'test'}")
    cmd = [sys.executable, "-m", "mypy", "-p", "kbroker", *argv]
    proc = subprocess.run(cmd, cwd=TREE, env=env, capture_output=True, text=True)
    first = _rewrite(proc.stdout)
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stderr)
        return proc.returncode
    others = subprocess.run(
        [sys.executable, "-m", "mypy", "test", "hack", "examples"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    sys.stdout.write(first + others.stdout)
    sys.stderr.write(proc.stderr + others.stderr)
    return max(proc.returncode, others.returncode)


def _rewrite(text: str) -> str:
    """kbroker/core/x.py:3: ... -> core/x.py:3: ... (the file a maintainer edits)."""
    out = []
    for line in text.splitlines(keepends=True):
        path, sep, rest = line.partition(":")
        link = TREE / path
        if sep and link.exists():
            line = f"{os.path.relpath(link.resolve(), ROOT)}{sep}{rest}"
        out.append(line)
    return "".join(out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
