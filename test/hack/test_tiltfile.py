"""The Tiltfile, tested without Tilt (see hack/tiltfile_reader.py; test_tilt.py runs `tilt ci`).

Process mode: every resource is declared with the right dependencies, every `kbroker` command line
in it parses with the real CLI, and its ingress and filter serve_cmds, started exactly as written,
pass their readiness probes and carry an event from the ingress to a subscriber through the
contract file the controller would write. Cluster mode: it builds one image and declares the
three deployables whose Deployments it applies.

    ingress serve_cmd --> embedded log (.run/tilt/data) --> filter serve_cmd --> sink
                 ^---------- .run/tilt/contract.json ----------^
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from fixtures.broker import make_event
from fixtures.subscriber import SinkServer
from hack.tiltfile_reader import evaluate
from kbroker.core import contract, events

from kbroker.__main__ import build_parser

ROOT = Path(__file__).resolve().parents[2]
TILTFILE = ROOT / "Tiltfile"


def kbroker_argv(command: str) -> list[str] | None:
    argv = shlex.split(command)
    if not argv or not argv[0].endswith("/kbroker"):
        return None
    return argv[1:]


def test_process_mode_declares_the_whole_loop() -> None:
    res = evaluate(TILTFILE, "process").resources
    assert set(res) == {
        "kafka",
        "kube",
        "manifests",
        "ingress",
        "filter",
        "controller",
        "unit",
        "integration",
    }
    assert set(res["controller"].resource_deps) == {"manifests", "ingress", "filter"}
    assert set(res["manifests"].resource_deps) == {"kube", "kafka"}
    for name in ("ingress", "filter", "controller"):
        assert res[name].readiness_probe is not None, name
        assert "kbroker" in res[name].deps  # sources changes restart the process (live reload)
    assert res["integration"].options["auto_init"] is True  # `tilt ci` runs it once


def test_what_the_controller_waits_for_does_not_wait_for_the_controller() -> None:
    """Tilt starts the controller once ingress and filter pass their probes; their /readyz waits
    for the contract the controller writes, so they must be probed on /healthz (`tilt ci` hung
    until its timeout on this cycle)."""
    res = evaluate(TILTFILE, "process").resources
    for name in res["controller"].resource_deps:
        probe = res[name].readiness_probe
        if probe is not None and "http_get" in probe:
            assert probe["http_get"]["path"] != "/readyz", name


def test_every_kbroker_command_parses_with_the_real_cli() -> None:
    parser = build_parser()
    seen = 0
    for r in evaluate(TILTFILE, "process").resources.values():
        for command in (r.serve_cmd, r.cmd):
            argv = kbroker_argv(command) if command else None
            if argv is not None:
                parser.parse_args(argv)  # SystemExit (a failure) on any unknown flag
                seen += 1
    assert seen == 3  # ingress, filter, controller


def test_scripts_it_runs_exist() -> None:
    res = evaluate(TILTFILE, "process").resources
    assert (ROOT / shlex.split(res["kafka"].serve_cmd or "")[1]).is_file()
    assert (ROOT / shlex.split(res["kube"].cmd or "")[1]).is_file()


def test_cluster_mode_builds_one_image_for_the_three_deployables() -> None:
    declared = evaluate(TILTFILE, "cluster")
    assert declared.images == ["kbroker:dev"]
    deployments = {
        o["metadata"]["name"] for o in declared.k8s_objects if o.get("kind") == "Deployment"
    }
    assert {"kbroker-ingress", "kbroker-filter", "kbroker-controller"} <= deployments
    assert set(declared.k8s_resources) <= deployments


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def test_process_mode_data_plane_runs_as_declared(sinks: SinkServer) -> None:
    res = evaluate(TILTFILE, "process").resources
    ports = [res[n].readiness_probe["http_get"]["port"] for n in ("ingress", "filter")]  # type: ignore[index]
    if not all(_port_free(p) for p in ports):
        pytest.skip(f"ports {ports} of the Tiltfile are in use on this machine")
    run = ROOT / ".run" / "tilt"
    shutil.rmtree(run / "data", ignore_errors=True)
    run.mkdir(parents=True, exist_ok=True)
    sink = sinks.sink("s")
    broker = contract.Broker(
        "default", "default", "b-uid", f"http://127.0.0.1:{ports[0]}/default/default"
    )
    trigger = contract.Trigger("default", "t", contract.TriggerUid("t-uid"), "default", sink.url)
    (run / "contract.json").write_bytes(contract.Contract(1, (broker,), (trigger,)).to_json())
    procs = [
        subprocess.Popen(
            shlex.split(res[n].serve_cmd or ""),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in ("ingress", "filter")
    ]
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            for name, port in zip(("ingress", "filter"), ports, strict=True):
                probe = res[name].readiness_probe["http_get"]  # type: ignore[index]
                url = f"http://127.0.0.1:{port}{probe['path']}"
                for _ in range(300):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(url)).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail(f"{name}: readiness probe {url} never passed")
                # The probe is /healthz (the process is up), not "serves the contract": wait, as
                # the controller does before it calls a Trigger Ready, until each process serves
                # generation 1 (the filter only once its Trigger's start position is pinned).
                served = f"http://127.0.0.1:{port}/contract-generation"
                for _ in range(300):
                    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                        if (await client.get(served)).json()["generation"] >= 1:
                            break
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail(f"{name}: never served the contract ({served})")
            headers, body = events.encode_binary(make_event("tilt-1"))
            resp = await client.post(broker.address, headers=headers, content=body)
            assert resp.status_code == 202
        got = await sink.wait_for(1, 30)
        assert got[0].id == "tilt-1"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
