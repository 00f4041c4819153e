"""`kbroker ui`, the cluster console, against a real kube-apiserver: it refuses to start without
a token, asks every request for it, and creates Triggers through the API server."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
from fixtures.kube import Kube


def test_it_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "kbroker", "ui", "--port", "0"]
    proc = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "needs --token-file" in proc.stderr
    empty = tmp_path / "token"
    empty.write_text("\n")
    proc = subprocess.run(
        [*base, "--token-file", str(empty)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "missing or empty" in proc.stderr


async def test_it_creates_triggers_through_the_api_server(kube: Kube, tmp_path: Path) -> None:
    ns = kube.namespace("console")
    kube.kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Broker",
                "metadata": {"name": "default", "namespace": ns},
            }
        ),
    )
    for _ in range(300):  # a CRD just established may answer 429 for a moment
        if kube.run_kubectl("get", "triggers", "-n", ns).returncode == 0:
            break
        await asyncio.sleep(0.1)
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kbroker",
        "ui",
        "--kubeconfig",
        str(kube.kubeconfig),
        "--token-file",
        str(token),
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        found = re.search(r"ready on (http://\S+)/-/ui/", line)
        assert found, line
        async with httpx.AsyncClient(base_url=found.group(1), timeout=10) as c:
            assert (await c.get("/-/ui/")).status_code == 401
            c.headers["Authorization"] = "Bearer s3cret"
            page = await c.get("/-/ui/")
            assert page.status_code == 200
            assert f"{ns}/default" in page.text  # read through the API server
            c.headers["X-CSRF-Token"] = c.cookies["kbroker-ui-csrf"]
            form = {
                "broker": f"{ns}/default",
                "name": "from-console",
                "mode": "filters",
                "row_dialect_0": "exact",
                "row_attr_0": "type",
                "row_value_0": "order.created",
                "subscriber": "http://169.254.169.254/latest",
                "inherit": "on",
            }
            refused = await c.post("/-/ui/triggers/new", data=form)
            assert refused.status_code == 422  # SSRF: link-local refused in cluster mode
            form["subscriber"] = "http://orders.example.svc.cluster.local/"
            created = await c.post("/-/ui/triggers/new", data=form)
            assert created.status_code == 303, created.text[-2000:]
        got = json.loads(kube.kubectl("get", "trigger", "from-console", "-n", ns, "-o", "json"))
        assert got["spec"]["filters"] == [{"exact": {"type": "order.created"}}]
        assert got["spec"]["subscriber"] == {"uri": "http://orders.example.svc.cluster.local/"}
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


def test_the_optional_manifest_runs_the_real_command_with_a_token_from_a_secret() -> None:
    import yaml

    from kbroker.__main__ import build_parser

    root = Path(__file__).resolve().parents[2] / "config"
    assert not (root / "ui.yaml").exists()  # off by default: not among config/*.yaml
    docs = list(yaml.safe_load_all((root / "optional" / "ui.yaml").read_text()))
    [deploy] = [d for d in docs if d["kind"] == "Deployment"]
    [container] = deploy["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "ui"
    env = {e["name"]: e["value"] for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "token")
    assert env["KBROKER_UI_TOKEN_FILE"].startswith(mount["mountPath"] + "/")
    volume = next(v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == "token")
    assert "secret" in volume
    rules = [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]
    assert all("secrets" not in r["resources"] for r in rules)
    writes = {
        res for r in rules if {"create", "update"} & set(r["verbs"]) for res in r["resources"]
    }
    assert writes == {"triggers"}
