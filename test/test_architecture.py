"""The import rules of the architecture page, checked on every module's AST.

Everything installs under one namespace (`kbroker.core`, `kbroker.ingress`, ...), so every import of
a layer is written `from kbroker.<layer> import x`. The rules:

- `ingress`, `filter`, `controller` and `sources` never import each other; all may import `core`;
- `core` imports none of them, and the CLI (`kbroker` itself) is the only place that wires them;
- nobody imports a layer by its bare folder name (`from core import x` would load a second copy);
- `confluent_kafka` only in the Kafka channel's modules, and only its public modules; `nats`
  (nats-py) only in the NATS channel's modules;
  `kubernetes_asyncio` only in `controller/kube/`; nobody writes `import kbroker.filter` bare
  (always `from ... import x`);
- only `core/settings.py` reads the environment (`os.environ`, `os.getenv`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("core", "ingress", "filter", "controller", "sources", "ui")
PACKAGES = (*LAYERS, "kbroker")
FORBIDDEN = {
    "core": {"ingress", "filter", "controller", "sources", "ui", "kbroker"},
    "ingress": {"filter", "controller", "sources", "ui", "kbroker"},
    "filter": {"ingress", "controller", "sources", "ui", "kbroker"},
    "controller": {"ingress", "filter", "sources", "ui", "kbroker"},
    "sources": {"ingress", "filter", "controller", "ui", "kbroker"},
    # The console reaches the running parts through Protocols that `kbroker` wires in.
    "ui": {"ingress", "filter", "controller", "sources", "kbroker"},
    "kbroker": set(),
}
ONLY_IN = {
    # The channel's API module and its private parts (_kafka_records.py, _kafka_producer.py, ...).
    "confluent_kafka": ("core/channels/kafka.py", "core/channels/_kafka_"),
    "kubernetes_asyncio": ("controller/kube/",),
    # nats-py: the NATS channel's private parts (_nats_client.py, _nats_consumer.py, ...).
    "nats": ("core/channels/nats.py", "core/channels/_nats_"),
    "aiormq": ("core/channels/rabbitmq.py", "core/channels/_rabbitmq_"),
    "pamqp": ("core/channels/rabbitmq.py", "core/channels/_rabbitmq_"),
}


# cimpl and admin._* are implementation modules whose layout changes between releases.
PUBLIC_KAFKA = ("confluent_kafka", "confluent_kafka.admin")


def modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def layer_of(module: str) -> str:
    """The layer a dotted import names: kbroker.core.x -> core, kbroker.cmd_run -> kbroker,
    anything else -> its top-level name (a third-party or standard module, or a bare folder)."""
    parts = module.split(".")
    if parts[0] == "kbroker":
        return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "kbroker"
    return parts[0]


def may_import(rel: str, top: str) -> bool:
    """Whether the module at `rel` (relative to the repository) may import the package `top`."""
    return top not in ONLY_IN or rel.startswith(ONLY_IN[top])


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
            assert may_import(rel, top), f"{rel} imports {top}, allowed only in {ONLY_IN[top]}"
        if top == "confluent_kafka":
            assert module in PUBLIC_KAFKA, f"{rel}: {module} is not confluent_kafka's public API"
        assert not (bare and module.startswith("kbroker.filter")), f"{rel}: from kbroker.filter"


ENVIRONMENT_READER = "core/settings.py"


def reads_environment(path: Path) -> bool:
    """Whether a module touches os.environ / os.getenv / os.environb, however imported."""
    names = ("environ", "environb", "getenv")
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "os" and node.attr in names:
                return True
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(a.name in names for a in node.names)
        ):
            return True
    return False


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_settings_read_the_environment(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    if rel != ENVIRONMENT_READER:
        assert not reads_environment(path), f"{rel} reads the environment: use core.settings"


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("import os\nx = os.environ.get('A')\n", True),
        ("import os\nx = os.getenv('A')\n", True),
        ("from os import environ\n", True),
        ("import os\nx = os.stat('.')\n", False),
        ("env = {'environ': 1}\n", False),
    ],
    ids=["environ", "getenv", "from-import", "other-os", "not-os"],
)
def test_environment_reads_are_seen(tmp_path: Path, source: str, reads: bool) -> None:
    module = tmp_path / "m.py"
    module.write_text(source)
    assert reads_environment(module) is reads


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


@pytest.mark.parametrize(
    ("rel", "allowed"),
    [
        ("core/channels/kafka.py", True),
        ("core/channels/_kafka_producer.py", True),
        ("core/channels/_kafka_consumer.py", True),
        ("core/channels/_kafka_records.py", True),
        ("core/channels/_kafka_admin.py", True),
        ("core/channels/embedded.py", False),
        ("core/channels/_sqlite_log.py", False),
        ("core/events.py", False),
        ("filter/dispatch.py", False),
    ],
)
def test_confluent_kafka_only_in_the_kafka_channel(rel: str, allowed: bool) -> None:
    assert may_import(rel, "confluent_kafka") is allowed


def test_every_kafka_channel_module_is_covered() -> None:
    parts = sorted(p.name for p in (ROOT / "core" / "channels").glob("*kafka*.py"))
    assert len(parts) > 1
    for name in parts:
        assert may_import(f"core/channels/{name}", "confluent_kafka"), name


@pytest.mark.parametrize(
    ("rel", "allowed"),
    [
        ("core/channels/nats.py", True),
        ("core/channels/_nats_client.py", True),
        ("core/channels/_nats_consumer.py", True),
        ("core/channels/_nats_producer.py", True),
        ("core/channels/_nats_records.py", True),
        ("core/channels/kafka.py", False),
        ("core/events.py", False),
        ("kbroker/wiring.py", False),
        ("test/core/channels/test_nats.py", False),
    ],
)
def test_nats_only_in_the_nats_channel(rel: str, allowed: bool) -> None:
    assert may_import(rel, "nats") is allowed
