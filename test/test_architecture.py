"""The import rules of the architecture page, checked on every module's AST.

Everything installs under one namespace (`kbroker.core`, `kbroker.ingress`, ...), so every import of
a layer is written `from kbroker.<layer> import x`. The rules:

- `ingress`, `filter` and `controller` never import each other; all may import `core`;
- `core` imports none of them, and the CLI (`kbroker` itself) is the only place that wires them;
- nobody imports a layer by its bare folder name (`from core import x` would load a second copy);
- `confluent_kafka` only in the Kafka channel's modules; `kubernetes_asyncio` only in
  `controller/kube/`; nobody writes `import kbroker.filter` bare (always `from ... import x`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("core", "ingress", "filter", "controller")
PACKAGES = (*LAYERS, "kbroker")
FORBIDDEN = {
    "core": {"ingress", "filter", "controller", "kbroker"},
    "ingress": {"filter", "controller", "kbroker"},
    "filter": {"ingress", "controller", "kbroker"},
    "controller": {"ingress", "filter", "kbroker"},
    "kbroker": set(),
}
ONLY_IN = {
    "confluent_kafka": ("core/channels/kafka",),
    "kubernetes_asyncio": ("controller/kube/",),
}


def modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def layer_of(module: str) -> str:
    """The layer a dotted import names: kbroker.core.x -> core, kbroker.cmd_run -> kbroker,
    anything else -> its top-level name (a third-party or standard module, or a bare folder)."""
    parts = module.split(".")
    if parts[0] == "kbroker":
        return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "kbroker"
    return parts[0]


def imported(path: Path) -> list[tuple[str, str, bool]]:
    """(dotted module, its layer, whether it was a bare `import x`) for every absolute import."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, layer_of(alias.name), True) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, layer_of(node.module), False))
    return out


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_import_rules(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    package = rel.split("/")[0]
    for module, layer, bare in imported(path):
        top = module.split(".")[0]
        assert top not in LAYERS, f"{rel}: import kbroker.{module}, not {module}"
        if top == "kbroker":
            assert layer not in FORBIDDEN[package], f"{rel} imports {module}"
        if top in ONLY_IN:
            allowed = ONLY_IN[top]
            assert rel.startswith(allowed), f"{rel} imports {top}, allowed only in {allowed}"
        assert not (bare and module.startswith("kbroker.filter")), f"{rel}: from kbroker.filter"


def test_rules_see_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text(
        "import confluent_kafka\nfrom kbroker.ingress import routes\nfrom core import x\n"
    )
    assert imported(bad) == [
        ("confluent_kafka", "confluent_kafka", True),
        ("kbroker.ingress", "ingress", False),
        ("core", "core", False),
    ]
