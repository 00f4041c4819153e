"""Transport security, quotas and the operational endpoints, on the real `kbroker run` process.

producer --https (CA: the test's)--> kbroker run --https (--subscriber-ca)--> sinks, replies, DLS
operator --Bearer <ops token>--> /status, /metrics          kubelet --> /healthz, /readyz (open)
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from e2e import knative_yaml as ky
from e2e.test_cluster_observability import Spawn, spawn  # noqa: F401 (the fixture)
from fixtures.broker import BrokerProcess, StartBroker, make_event
from fixtures.certs import ServerCerts, make_ca
from fixtures.subscriber import SinkServer
from kbroker.controller.kube.contract_map import DataPlaneProbe
from kbroker.core import contract, events, tls

from kbroker import cmd_get
from kbroker.__main__ import build_parser

FAST = {"backoffPolicy": "linear", "backoffDelay": "PT0.01S"}
TOKEN = "s3cret-ops-token"


async def start_tls_broker(
    tmp_path: Path, certs: ServerCerts, files: dict[str, str], extra: list[str]
) -> BrokerProcess:
    token = tmp_path / "ops-token"
    token.write_text(TOKEN + "\n")
    proc = BrokerProcess(
        tmp_path / "b",
        [
            "--tls-cert",
            str(certs.cert),
            "--tls-key",
            str(certs.key),
            "--tls-ca",
            str(certs.ca.path),
            "--ops-token",
            str(token),
            *extra,
        ],
    )
    await proc.client.aclose()
    proc.client = httpx.AsyncClient(
        timeout=10.0,
        verify=tls.client_context(certs.ca.path),
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    for name, text in files.items():
        proc.write(name, text)
    await proc.start()
    return proc


@pytest.fixture
async def https_sinks(tmp_path: Path) -> tuple[SinkServer, Path]:
    """A subscriber server with its own CA (not the broker's), for --subscriber-ca."""
    folder = tmp_path / "sink-tls"
    folder.mkdir()
    ca = make_ca(folder, "sink-ca")
    ca.issue(folder / "tls.crt", folder / "tls.key", serial=77)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(folder / "tls.crt", folder / "tls.key")
    server = SinkServer()
    await server.start(ssl_context=ctx)
    return server, ca.path


async def test_https_end_to_end_with_rotation_and_ops_token(
    tmp_path: Path, server_certs: ServerCerts, https_sinks: tuple[SinkServer, Path]
) -> None:
    sinks, sink_ca = https_sinks
    replier = sinks.sink(
        "replier", reply=lambda ev: make_event("re-" + ev.id, type="com.example.reply")
    )
    replies = sinks.sink("replies")
    failing, dls = sinks.sink("failing", status=500), sinks.sink("dls")
    objects = [
        ky.broker(),
        ky.trigger("t1", replier.url, attributes={"type": "com.example.start"}),
        ky.trigger("t2", replies.url, attributes={"type": "com.example.reply"}),
        ky.trigger(
            "t3",
            failing.url,
            attributes={"type": "com.example.start"},
            delivery={**ky.dls(dls.url, retry=1), **FAST},
        ),
    ]
    proc = await start_tls_broker(
        tmp_path,
        server_certs,
        {"o.yaml": ky.dump(*objects)},
        ["--subscriber-ca", str(sink_ca)],
    )
    try:
        assert proc.base.startswith("https://127.0.0.1:")
        for kind, name in [("Broker", "default"), ("Trigger", "t1"), ("Trigger", "t3")]:
            await proc.wait_ready_object(kind, name)
        st = await proc.object_status("Broker", "default")
        assert st is not None
        address = st["status"]["address"]
        assert address["name"] == "https"
        assert address["url"] == f"{proc.base}/default/default"
        assert address["CACerts"] == server_certs.ca.path.read_text()

        # Operational endpoints: token required; probes open; plaintext refused.
        bare = httpx.AsyncClient(verify=tls.client_context(server_certs.ca.path), timeout=5)
        try:
            for path in ("/status", "/metrics"):
                resp = await bare.get(proc.base + path)
                assert resp.status_code == 401, path
                bad = await bare.get(proc.base + path, headers={"authorization": "Bearer nope"})
                assert bad.status_code == 401
                assert (await proc.client.get(proc.base + path)).status_code == 200
            for path in ("/healthz", "/readyz"):
                assert (await bare.get(proc.base + path)).status_code == 200, path
        finally:
            await bare.aclose()
        with pytest.raises(httpx.HTTPError):
            async with httpx.AsyncClient(timeout=2) as plain:
                await plain.get(proc.base.replace("https:", "http:") + "/healthz")

        # `kbroker get` reads /status over https with the token.
        args = build_parser().parse_args(
            ["get", "brokers", "--server", proc.base, "--ca", str(server_certs.ca.path)]
        )
        assert await asyncio.to_thread(cmd_get.main, args) == 1  # no token: refused
        token_file = tmp_path / "ops-token"
        args.ops_token = token_file
        assert await asyncio.to_thread(cmd_get.main, args) == 0

        # Events over https both ways: subscriber, reply back through ingress, dead-letter sink.
        assert (await proc.send(make_event("e1", type="com.example.start"))).status_code == 202
        assert [e.id for e in await replies.wait_for(1)] == ["re-e1"]
        assert [e.id for e in await dls.wait_for(1)] == ["e1"]
        assert replier.ids() == ["e1"]

        # Rotation: new connections see the new certificate; the broker never restarted.
        server_certs.ca.issue(server_certs.cert, server_certs.key, serial=9, mtime=time.time() + 5)
        ctx = tls.client_context(server_certs.ca.path)
        port = proc.port

        async def serial() -> int:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            writer.close()
            from cryptography import x509

            return int(x509.load_der_x509_certificate(der).serial_number)

        async def rotated() -> bool:
            return await serial() == 9

        await proc.until(rotated, 10, "the new certificate was never served")
        assert (await proc.send(make_event("e2", type="com.example.start"))).status_code == 202
        await replies.wait_for(2)
    finally:
        await proc.close()
        await sinks.close()


async def test_subscriber_with_an_untrusted_certificate_is_not_delivered_to(
    start_broker: StartBroker, https_sinks: tuple[SinkServer, Path]
) -> None:
    """Without --subscriber-ca the system trust store applies: the sink's private CA fails."""
    sinks, _ = https_sinks
    sub = sinks.sink("sub")
    proc = await start_broker(
        {"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sub.url, delivery={"retry": 0}))}
    )
    try:
        await proc.wait_ready_object("Trigger", "t")
        assert (await proc.send(make_event("x1"))).status_code == 202
        await asyncio.sleep(1.0)
        assert sub.received == []  # the TLS handshake failed: no request reached it
    finally:
        await sinks.close()


async def test_quota_answers_429_and_spares_other_brokers(start_broker: StartBroker) -> None:
    limited = ky.broker(
        "limited", annotations={"kbroker.dev/rate-limit": "2", "kbroker.dev/rate-burst": "5"}
    )
    bad = ky.broker("bad", annotations={"kbroker.dev/byte-rate-limit": "plenty"})
    proc = await start_broker({"o.yaml": ky.dump(ky.broker(), limited, bad)})
    await proc.wait_ready_object("Broker", "limited")
    await proc.wait_ready_object("Broker", "default")

    async def bad_reported() -> bool:
        cond = await proc.condition("Broker", "bad")
        return cond is not None and cond["status"] == "False"

    await proc.until(bad_reported, 10, "the invalid quota never showed in the status")
    cond = await proc.condition("Broker", "bad")
    assert cond is not None and "byte-rate-limit" in cond["message"]

    codes = [(await proc.send(make_event(f"q{i}"), "limited")) for i in range(8)]
    assert [r.status_code for r in codes[:5]] == [202] * 5
    throttled = [r for r in codes[5:] if r.status_code == 429]
    assert throttled, [r.status_code for r in codes]
    assert all(int(r.headers["retry-after"]) >= 1 for r in throttled)
    for i in range(30):  # the default broker has no quota
        assert (await proc.send(make_event(f"d{i}"))).status_code == 202
    metrics = (await proc.client.get(proc.base + "/metrics")).text
    throttled_lines = [
        line
        for line in metrics.splitlines()
        if line.startswith("kbroker_broker_ingress_request_count_total{")
        and 'broker_name="limited"' in line
        and 'response_code="429"' in line
    ]
    assert len(throttled_lines) == 1, metrics
    assert float(throttled_lines[0].rsplit(" ", 1)[1]) == len(throttled)
    await asyncio.sleep(int(throttled[-1].headers["retry-after"]))
    assert (await proc.send(make_event("later"), "limited")).status_code == 202  # recovered


async def test_cluster_deployables_take_the_same_settings_from_the_environment(
    tmp_path: Path,
    server_certs: ServerCerts,
    spawn: Spawn,  # noqa: F811 (the imported fixture)
) -> None:
    """`kbroker ingress` and `kbroker filter` as a Deployment runs them: KBROKER_TLS_* and
    KBROKER_OPS_TOKEN_FILE, no flags."""
    token = tmp_path / "ops-token"
    token.write_text(TOKEN)
    env = {
        "KBROKER_TLS_CERT": str(server_certs.cert),
        "KBROKER_TLS_KEY": str(server_certs.key),
        "KBROKER_TLS_CA": str(server_certs.ca.path),
        "KBROKER_OPS_TOKEN_FILE": str(token),
    }
    contract_file = tmp_path / "contract.json"
    broker = contract.Broker("default", "default", "b", "https://unused/default/default")
    contract_file.write_bytes(contract.Contract(1, (broker,)).to_json())
    args = ("--contract", str(contract_file), "--data", str(tmp_path / "data"), "--poll", "0.1")
    verify = tls.client_context(server_certs.ca.path)
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(timeout=10.0, verify=verify) as client:
        for kind in ("ingress", "filter"):
            d = spawn(kind, *args, env=env)
            assert d.url.startswith("https://127.0.0.1:"), d.url
            for path in ("/contract-generation", "/metrics"):
                assert (await client.get(d.url + path)).status_code == 401, (kind, path)
                assert (await client.get(d.url + path, headers=auth)).status_code == 200
            assert (await client.get(d.url + "/healthz")).status_code == 200
            # The controller's readiness probe gets through with the token and the CA.
            probe = DataPlaneProbe((d.url,), token_file=token, ca=server_certs.ca.path)
            unauthorized = DataPlaneProbe((d.url,), ca=server_certs.ca.path)
            try:
                assert await probe.generation() == 1
                assert await unauthorized.generation() == -1
            finally:
                await probe.close()
                await unauthorized.close()
            if kind == "ingress":
                headers, body = events.encode_binary(make_event("c1"))
                url = f"{d.url}/default/default"
                resp = await client.post(url, headers=headers, content=body)
                assert resp.status_code == 202, resp.text


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--tls-key", "{key}"], "both --tls-cert and --tls-key"),
        (["--tls-cert", "{cert}", "--tls-key", "{cert}"], "TLS certificate"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}", "--processes", "2"], "--processes"),
    ],
    ids=["key-without-cert", "unusable-key", "tls-with-processes"],
)
def test_bad_tls_settings_refuse_to_start(
    tmp_path: Path, server_certs: ServerCerts, extra: list[str], says: str
) -> None:
    """Never a silent fallback to plaintext: one line on stderr and exit code 2."""
    config = tmp_path / "config"
    config.mkdir()
    argv = [a.format(cert=server_certs.cert, key=server_certs.key) for a in extra]
    base = ["run", "--config", str(config), "--port", "0", "--data", str(tmp_path / "data")]
    done = subprocess.run(
        [sys.executable, "-m", "kbroker", *base, *argv],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert says in done.stderr.decode()
