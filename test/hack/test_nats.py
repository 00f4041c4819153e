"""hack/nats.py's command lines and cache, checked without starting a server."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.nats import hack_nats


def test_three_nodes_route_to_the_others_on_loopback_with_own_data_dirs(tmp_path: Path) -> None:
    module = hack_nats()
    cluster = module.NatsCluster(tmp_path, nodes=3)
    cluster.nodes = [module.Node(i, 4220 + i, 6220 + i, 8220 + i) for i in (1, 2, 3)]
    args = cluster._args(cluster.nodes[1])
    assert args[args.index("-a") + 1] == "127.0.0.1"
    assert args[args.index("-p") + 1] == "4222"
    assert "-js" in args and args[args.index("-sd") + 1] == str(tmp_path.resolve() / "data-2")
    assert args[args.index("--cluster") + 1] == "nats://127.0.0.1:6222"
    assert args[args.index("--routes") + 1] == "nats://127.0.0.1:6221,nats://127.0.0.1:6223"
    assert cluster.url == "nats://127.0.0.1:4221,nats://127.0.0.1:4222,nats://127.0.0.1:4223"


def test_one_node_has_no_cluster(tmp_path: Path) -> None:
    module = hack_nats()
    cluster = module.NatsCluster(tmp_path, nodes=1)
    cluster.nodes = [module.Node(1, 4222, 6222, 8222)]
    assert "--cluster" not in cluster._args(cluster.nodes[0])


def test_build_is_a_no_op_when_the_binary_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    module = hack_nats()
    if not module.binary().exists():
        pytest.skip("nats-server not built yet (hack/nats.py build)")

    def no_go(*args: object, **kwargs: object) -> None:
        raise AssertionError("go install ran although the binary is cached")

    monkeypatch.setattr(module.subprocess, "run", no_go)
    assert module.build() == module.binary()


def test_only_one_or_three_nodes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        hack_nats().NatsCluster(tmp_path, nodes=2)
