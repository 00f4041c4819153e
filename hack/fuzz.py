"""Coverage-guided fuzzing of the untrusted-input parsers with atheris (libFuzzer for Python).

    hack/fuzz.py [TARGET ...] [--seconds N] [--work DIR]    default: every target, 300 s each
    hack/fuzz.py --list

The targets and their properties are in test/fuzz/targets.py (http, kafka, json, cesql). Each
runs in its own process (libFuzzer exits the process when it stops), seeded from
test/fuzz/corpus/<target>/ and guided by test/fuzz/dicts/<target>.dict. Inputs that reach new
code are kept in the work folder (.run/fuzz/<target>/, not in git), so long runs build on each
other. Every crash, hang (libFuzzer's -timeout, 10 s) or memory blow-up is copied into the
repository corpus as `crash-…`/`timeout-…`/`oom-…`, where `make test` replays it from then on:
fix the bug, keep the seed.

Why atheris is optional: it ships wheels for x86-64 Linux only. Without it this script runs the
hypothesis explorer (test/fuzz/explore.py) for the same time instead, which is not coverage-guided.
What it refuses to do: write anything into the repository except those failing inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ("crash-", "timeout-", "oom-", "leak-")
TIMEOUT = 10  # seconds per input before libFuzzer calls it a hang


def have_atheris() -> bool:
    return importlib.util.find_spec("atheris") is not None


def collect(artifacts: Path, corpus: Path) -> list[Path]:
    """Copy libFuzzer's failing inputs into `corpus`, named by kind and content hash."""
    saved = []
    for found in sorted(artifacts.iterdir()):
        kind = next((a for a in ARTIFACTS if found.name.startswith(a)), None)
        if kind is None:
            continue
        data = found.read_bytes()
        dest = corpus / f"{kind}{hashlib.sha1(data).hexdigest()}"
        corpus.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        saved.append(dest)
    return saved


def libfuzzer_args(name: str, seconds: float, work: Path, artifacts: Path) -> list[str]:
    from fuzz.targets import TARGETS

    target = TARGETS[name]
    work.mkdir(parents=True, exist_ok=True)
    args = [
        f"-max_total_time={max(1, round(seconds))}",
        f"-max_len={target.max_len}",
        f"-timeout={TIMEOUT}",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
    ]
    if target.dictionary.exists():
        args.append(f"-dict={target.dictionary}")
    # New interesting inputs go to the first folder only: the work folder, never the repository.
    return [*args, str(work), str(target.corpus)]


def fuzz_one(name: str, seconds: float, work: Path) -> tuple[bool, str, list[Path]]:
    """Fuzz one target in a child process: (passed, libFuzzer's output, saved failing inputs)."""
    from fuzz.targets import TARGETS

    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as tmp:
        artifacts = Path(tmp)
        cmd = [sys.executable, __file__, "--worker", name]
        cmd += libfuzzer_args(name, seconds, work / name, artifacts)
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=seconds + 4 * TIMEOUT + 60,
        )
        saved = collect(artifacts, TARGETS[name].corpus)
    return proc.returncode == 0 and not saved, proc.stdout + proc.stderr, saved


def worker(name: str, args: list[str]) -> None:
    """Inside the child: instrument kbroker's modules, then hand control to libFuzzer."""
    atheris: Any = importlib.import_module("atheris")
    with atheris.instrument_imports(include=["kbroker"]):
        from fuzz.targets import TARGETS

        target = TARGETS[name]

    def one(data: bytes) -> None:
        target.run(data)

    atheris.Setup([sys.argv[0], *args], one)
    atheris.Fuzz()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        worker(argv[1], argv[2:])
        return 0
    from fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=", ".join(TARGETS))
    parser.add_argument("--seconds", type=float, default=300.0, help="per target")
    parser.add_argument("--work", type=Path, default=ROOT / ".run" / "fuzz")
    parser.add_argument("--list", action="store_true")
    opts = parser.parse_args(argv)
    names = opts.targets or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    if opts.list:
        print("\n".join(TARGETS))
        return 0
    failed = []
    for name in names:
        if have_atheris():
            passed, output, saved = fuzz_one(name, opts.seconds, opts.work)
            tail = [ln for ln in output.splitlines() if ln.startswith(("Done ", "stat::"))]
            print(f"{name}: {'ok' if passed else 'FAILED'} {' '.join(tail[:3])}")
            if not passed:
                print(output[-6000:])
        else:
            from fuzz.explore import explore

            print(f"{name}: atheris is not installed; running hypothesis for {opts.seconds:.0f} s")
            try:
                explore(TARGETS[name], opts.seconds)
                passed, saved = True, []
            except Exception as e:
                passed, saved = False, []
                print(f"{name}: {type(e).__name__}: {e}")
        for path in saved:
            print(f"{name}: failing input saved as {path.relative_to(ROOT)}")
        if not passed:
            failed.append(name)
    if failed:
        print("the failing inputs now replay in `make test`: fix the bug and commit the seed")
    return 1 if failed else 0


if __name__ == "__main__":
    # The harness lives with the tests; this folder holds nothing it imports (and this file would
    # shadow the `fuzz` package).
    sys.path[0] = str(ROOT / "test")
    sys.exit(main(sys.argv[1:]))
