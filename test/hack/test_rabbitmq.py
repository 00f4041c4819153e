"""hack/rabbitmq.py's promise that a node is private, checked without starting one: everything it
would share with another node (name, ports, epmd, folders, cookie, config) is its own."""

from __future__ import annotations

from pathlib import Path

from fixtures.rabbitmq import _hack_rabbitmq


def node_env(tmp: Path) -> dict[str, str]:
    node = _hack_rabbitmq().RabbitNode(tmp)
    node.nodename, node.port, node.dist_port, node.epmd_port = "kbroker-x@localhost", 1, 2, 3
    env: dict[str, str] = node.env()
    return env


def test_every_shared_thing_is_private(tmp_path: Path) -> None:
    env = node_env(tmp_path)
    assert env["RABBITMQ_NODENAME"].startswith("kbroker-")
    assert (env["RABBITMQ_NODE_PORT"], env["RABBITMQ_DIST_PORT"], env["ERL_EPMD_PORT"]) == (
        "1",
        "2",
        "3",
    )
    assert env["RABBITMQ_NODE_IP_ADDRESS"] == env["ERL_EPMD_ADDRESS"] == "127.0.0.1"
    assert "{127,0,0,1}" in env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    for name in (
        "HOME",  # the Erlang cookie
        "RABBITMQ_MNESIA_BASE",
        "RABBITMQ_LOG_BASE",
        "RABBITMQ_CONFIG_FILE",
        "RABBITMQ_ADVANCED_CONFIG_FILE",
        "RABBITMQ_ENABLED_PLUGINS_FILE",
        "RABBITMQ_CONF_ENV_FILE",
        "RABBITMQ_PID_FILE",
    ):
        assert Path(env[name]).is_relative_to(tmp_path), name


def test_scripts_are_the_release_ones_not_the_service_wrapper() -> None:
    # /usr/sbin/rabbitmq-server switches to the system user and its HOME (the system cookie).
    assert str(_hack_rabbitmq().SBIN) == "/usr/lib/rabbitmq/bin"
