"""What a user gets from `pip install kbroker`, checked on the real artefacts.

- every package folder installs under the kbroker namespace, and nothing else does: the wheel,
  built and installed into a clean virtualenv, holds no top-level `core`, `filter`, ... and its
  `kbroker run` serves the packaged examples;
- the optional parts stay optional: `kbroker bench` without the bench extra says how to get it,
  and the processes started often (`kbroker --help`, the extra ingress processes of
  `kbroker run --processes N`) import neither the benchmark nor aiohttp.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import httpx
import pytest
from fixtures.broker import make_event
from kbroker.core import contract, events

from kbroker import __main__ as cli

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What neither `kbroker --help` nor an extra ingress process may import.
HEAVY = ("aiohttp", "rich", "matplotlib", "kbroker.bench")


def test_every_package_folder_is_listed() -> None:
    tool = PYPROJECT["tool"]["setuptools"]
    mapping: dict[str, str] = tool["package-dir"]
    found = set()
    for name, folder in mapping.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found.add(".".join((name, *rel)))
    # a nested mapped folder (kbroker.core inside kbroker's own walk) is never under kbroker/
    assert set(tool["packages"]) == found
    assert all(p == "kbroker" or p.startswith("kbroker.") for p in tool["packages"])


def test_bench_libraries_are_an_extra() -> None:
    project = PYPROJECT["project"]
    runtime = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    for name in ("rich", "matplotlib", "cloudevents", "tenacity"):
        assert name not in runtime
    assert {d.split(">")[0] for d in extras["bench"]} == {"rich", "matplotlib"}
    assert "kbroker[bench]" in extras["dev"]


def _help_lines(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.help for a in sub._choices_actions}


def test_help_lists_every_subcommand_with_its_module_help() -> None:
    """The lazy parser's help lines are the ones the modules register (no drift)."""
    assert _help_lines(cli.parser_for([])) == _help_lines(cli.build_parser())


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_each_subcommand_parses_with_only_its_module(command: str) -> None:
    full = cli.build_parser()
    lazy = cli.parser_for([command])
    sub = next(a for a in lazy._actions if isinstance(a, argparse._SubParsersAction))
    assert sub.choices[command].format_usage() == (
        next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
        .choices[command]
        .format_usage()
    )


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return env


def _imported(stderr: str) -> set[str]:
    """Module names from `python -X importtime` output (`import time: self | cumul | name`)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def _heavy(names: set[str]) -> set[str]:
    return {n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY)}


def test_help_imports_neither_bench_nor_aiohttp() -> None:
    code = (
        "import sys, runpy\n"
        "sys.argv = ['kbroker', '--help']\n"
        "try:\n"
        "    runpy.run_module('kbroker', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}"
        " or m.startswith('kbroker.bench')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_clean_env(), check=True
    ).stdout
    assert "bench" in out  # the help text lists it ...
    assert out.splitlines()[-1] == "[]"  # ... without importing it


def test_extra_ingress_process_imports_neither_bench_nor_aiohttp(tmp_path: Path) -> None:
    """`kbroker run --processes N` starts N-1 `kbroker ingress` children: run one exactly so,
    take an event through it, and read what it imported."""
    broker = contract.Broker("default", "default", "b-uid", "http://127.0.0.1/default/default")
    path = tmp_path / "contract.json"
    path.write_bytes(contract.Contract(1, (broker,), ()).to_json())
    cmd = [sys.executable, "-X", "importtime", "-m", "kbroker", "ingress", "--contract", str(path)]
    cmd += ["--port", "0", "--data", str(tmp_path / "data"), "--poll", "0.2", "--reuse-port"]
    cmd += ["--admin-proxy", str(tmp_path / "admin.sock"), "--log-level", "warning"]
    log = tmp_path / "stderr"
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=_clean_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert " ready on " in line, log.read_text()[-2000:]
        base = line.split(" ready on ", 1)[1].strip()
        headers, body = events.encode_binary(make_event("startup-1"))
        resp = httpx.post(f"{base}/default/default", headers=headers, content=body, timeout=30)
        assert resp.status_code == 202, resp.text
    finally:
        proc.terminate()
        proc.wait(30)
    names = _imported(log.read_text())
    assert "kbroker.ingress.app" in names or any(n.startswith("kbroker.ingress") for n in names)
    assert _heavy(names) == set()


def test_bench_without_the_extra_says_how_to_get_it() -> None:
    # None in sys.modules makes `import rich` fail as if it were not installed.
    code = (
        "import sys\n"
        "sys.modules['rich'] = None\n"
        "from kbroker.__main__ import main\n"
        "sys.exit(main(['bench', 'ingress']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_clean_env()
    )
    assert proc.returncode != 0
    assert (
        proc.stderr.strip() == "kbroker bench needs the bench extra: pip install 'kbroker[bench]'"
    )


# The wheel, built from a copy of the sources (a build writes build/ and *.egg-info next to them).
SOURCES = (
    "pyproject.toml",
    "README.md",
    "core",
    "ingress",
    "filter",
    "controller",
    "sources",
    "kbroker",
    "examples",
    "ui",
)


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)]
    subprocess.run(pip, check=True, env=_clean_env(), timeout=600)
    (wheel,) = wheels.glob("kbroker-*.whl")
    return wheel


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_wheel_installs_one_namespace_and_serves_the_examples(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py, kbroker = venv / "bin" / "python", venv / "bin" / "kbroker"
    # Dependencies come from pip's cache when this machine installed them before.
    install = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)]
    subprocess.run(install, check=True, env=_clean_env(), timeout=900)
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    site = Path(purelib)
    assert site != Path(sysconfig.get_paths()["purelib"])
    top = {p.name for p in site.iterdir()}
    assert "kbroker" in top
    assert top.isdisjoint({"core", "ingress", "filter", "controller", "sources", "examples"}), top
    examples = site / "kbroker" / "examples"
    assert {p.name for p in examples.glob("*.yaml")} == {
        p.name for p in (ROOT / "examples").glob("*.yaml")
    }

    # Without the bench extra, `kbroker bench` explains itself instead of failing on an import.
    bench = subprocess.run([str(kbroker), "bench"], capture_output=True, text=True, cwd=tmp_path)
    assert bench.returncode != 0
    assert "pip install 'kbroker[bench]'" in bench.stderr

    cmd = [str(kbroker), "run", "--config", str(examples), "--port", "0"]
    cmd += ["--data", str(tmp_path / "data"), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=tmp_path, env=_clean_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("kbroker ready on "), line
        base = line.removeprefix("kbroker ready on ")
        headers, body = events.encode_binary(make_event("wheel-1"))
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(f"{base}/default/default", headers=headers, content=body)
            # The console's templates and vendored script travel in the wheel.
            page = await client.get(f"{base}/-/ui/")
            script = await client.get(f"{base}/-/ui/static/vendor/htmx.min.js")
        assert resp.status_code == 202, resp.text
        assert page.status_code == 200 and "kbroker console" in page.text
        assert script.status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
