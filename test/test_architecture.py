"""The import rules of the architecture page, checked on every module's AST.

- `ingress`, `filter` and `controller` never import each other; all may import `core`;
- `core` imports none of them, and `kbroker` (the CLI) is the only place that wires them together;
- `confluent_kafka` only in `core/channels/kafka.py`; `kubernetes_asyncio` only in
  `controller/kube.py`; nobody writes `import filter` (it shadows the builtin).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "ingress", "filter", "controller", "kbroker")
FORBIDDEN = {
    "core": {"ingress", "filter", "controller", "kbroker"},
    "ingress": {"filter", "controller", "kbroker"},
    "filter": {"ingress", "controller", "kbroker"},
    "controller": {"ingress", "filter", "kbroker"},
    "kbroker": set(),
}
ONLY_IN = {
    "confluent_kafka": {"core/channels/kafka.py"},
    "kubernetes_asyncio": {"controller/kube.py"},
}


def modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def imported(path: Path) -> list[tuple[str, bool]]:
    """(top-level module name, whether it was a bare `import x`) for every import."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name.split(".")[0], True) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module.split(".")[0], False))
    return out


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_import_rules(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    package = rel.split("/")[0]
    for name, bare in imported(path):
        assert name not in FORBIDDEN[package], f"{rel} imports {name}"
        if name in ONLY_IN:
            assert rel in ONLY_IN[name], f"{rel} imports {name}, allowed only in {ONLY_IN[name]}"
        assert not (bare and name == "filter"), f"{rel}: write `from filter import x`"


def test_rules_see_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("import confluent_kafka\nfrom ingress import routes\n")
    assert imported(bad) == [("confluent_kafka", True), ("ingress", False)]
