"""Every package folder installs under the kbroker namespace, and nothing else does."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
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
