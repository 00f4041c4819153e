"""Sources in cluster mode end to end: real kube-apiserver, controller, ingress and filter.

PingSource, ApiServerSource and SinkBinding objects go to the real API server (kubectl, and `kn
source ...` unchanged); the controller process reconciles them, fires the PingSource, watches
ConfigMaps, patches a Deployment's pod template; events travel through a Broker (ingress ->
embedded log -> filter) to a real HTTP subscriber. As in test_reconciler.py, ingress and filter
are local processes reading the contract file the controller writes, and Brokers' addresses are
the ingress's local URL. PingSources use the optional seconds field (`*/2 * * * * *`, which
Knative accepts too), so no test waits for a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fixtures.kube import Kube
from fixtures.subscriber import Sink, SinkServer

ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def spawn(
    name: str,
    args: list[str],
    root: Path,
    ready: str = "",
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Proc:
    n = len(list(root.glob(f"{name}-*.log"))) + 1
    log = root / f"{name}-{n}.log"  # one per start: a restart must not find the old ready line
    with log.open("ab") as out:
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    proc = Proc(name, popen, log)
    pattern = ready or rf"kbroker {name} ready on (\S+)"
    deadline = time.monotonic() + timeout
    while not (m := re.search(pattern, proc.tail())):
        if popen.poll() is not None or time.monotonic() > deadline:
            popen.kill()
            pytest.fail(f"{name} did not start: {proc.tail()}")
        time.sleep(0.05)
    proc.url = m.group(1)
    return proc


def kbroker(name: str, args: list[str], root: Path) -> Proc:
    return spawn(name, [sys.executable, "-m", "kbroker", *args, "--log-level", "info"], root)


def stop(proc: Proc | None) -> None:
    if proc is not None and proc.popen.poll() is None:
        proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(10)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(5)


@dataclass
class Plane:
    kube: Kube
    root: Path
    procs: list[Proc]

    @property
    def ingress(self) -> Proc:
        return self.procs[0]

    def kill_controller(self) -> None:
        controller = self.procs[2]
        if controller.popen.poll() is None:
            controller.popen.send_signal(signal.SIGKILL)
            controller.popen.wait(10)

    def restart_controller(self, kubeconfig: Path | None = None, *, crash: bool = False) -> None:
        """Start the controller again with the same flags (and this kubeconfig, if given). A
        clean stop releases the sources Lease; after a crash the new one waits for it to expire."""
        if crash:
            self.kill_controller()
        else:
            stop(self.procs[2])
        args = [str(a) for a in self.procs[2].popen.args]  # type: ignore[union-attr]
        args[args.index("--kubeconfig") + 1] = str(kubeconfig or self.kube.kubeconfig)
        self.procs[2] = spawn("controller", args, self.root)

    async def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return await asyncio.to_thread(self.kube.kubectl, *args, stdin=stdin)

    async def apply(self, ns: str, text: str) -> None:
        await self.kubectl("apply", "-n", ns, "-f", "-", stdin=text)

    async def get(self, ns: str, kind: str, name: str) -> dict[str, Any] | None:
        proc = await asyncio.to_thread(
            self.kube.run_kubectl, "get", "-n", ns, kind, name, "-o", "json"
        )
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            pytest.fail(proc.stderr)
        found: dict[str, Any] = json.loads(proc.stdout)
        return found

    async def until(self, check: Callable[[], Awaitable[T | None]], what: str, t: float = 30) -> T:
        deadline = time.monotonic() + t
        while True:
            for p in self.procs:
                if p.popen.poll() is not None:
                    pytest.fail(f"{p.name} exited: {p.tail()}")
            value = await check()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out waiting for {what}; controller log:\n{self.procs[2].tail()}"
                )
            await asyncio.sleep(0.1)

    async def condition(self, ns: str, kind: str, name: str, ctype: str = "Ready") -> Any:
        obj = await self.get(ns, kind, name)
        for c in ((obj or {}).get("status") or {}).get("conditions") or ():
            if c["type"] == ctype:
                return c
        return None

    async def ready(self, ns: str, kind: str, name: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            obj = await self.get(ns, kind, name)
            st = (obj or {}).get("status") or {}
            ok = any(
                c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", ())
            )
            fresh = (
                obj is not None and st.get("observedGeneration") == obj["metadata"]["generation"]
            )
            return obj if ok and fresh else None

        return await self.until(check, f"{kind} {ns}/{name} Ready")


@pytest.fixture(scope="module")
def plane(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    root = tmp_path_factory.mktemp("sources")
    kube.kubectl("apply", "-f", str(ROOT / "config" / "100-namespace.yaml"))
    kube.kubectl("apply", "-f", str(ROOT / "config" / "310-sources-crds.yaml"))
    for crd in ("pingsources", "apiserversources", "sinkbindings"):
        kube.kubectl("wait", "--for=condition=Established", f"crd/{crd}.sources.knative.dev")
    contract, data = str(root / "contract.json"), str(root / "data")
    common = ["--port", "0", "--data", data]
    procs: list[Proc] = []
    try:
        for name in ("ingress", "filter"):
            procs.append(
                kbroker(name, [name, "--contract", contract, "--poll", "0.1", *common], root)
            )
        procs.append(
            kbroker(
                "controller",
                [
                    "controller",
                    "--kubeconfig",
                    str(kube.kubeconfig),
                    "--contract-file",
                    contract,
                    "--ingress-url",
                    procs[0].url,
                    "--data-plane",
                    procs[0].url,
                    "--data-plane",
                    procs[1].url,
                    "--resync",
                    "1",
                    *common,
                ],
                root,
            )
        )
        yield Plane(kube, root, procs)
    finally:
        for p in reversed(procs):
            stop(p)


def broker_and_trigger(sink: Sink, trigger_filter: str = "") -> str:
    return f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: all}}
spec:
  broker: default
  {trigger_filter}
  subscriber:
    uri: {sink.url}
"""


async def broker_ready(plane: Plane, ns: str, sink: Sink) -> str:
    await plane.apply(ns, broker_and_trigger(sink))
    broker = await plane.ready(ns, "broker", "default")
    await plane.ready(ns, "trigger", "all")
    url: str = broker["status"]["address"]["url"]
    return url


async def test_pingsource_fires_through_the_broker(plane: Plane, sinks: SinkServer) -> None:
    sink = sinks.sink("kube-ping")
    ns = plane.kube.namespace("ping")
    url = await broker_ready(plane, ns, sink)
    await plane.apply(
        ns,
        """
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: every2s}
spec:
  schedule: "*/2 * * * * *"
  contentType: application/json
  data: '{"hello": "kube"}'
  ceOverrides: {extensions: {team: ops}}
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
""",
    )
    ping = await plane.ready(ns, "pingsource", "every2s")
    st = ping["status"]
    source = f"/apis/v1/namespaces/{ns}/pingsources/every2s"
    assert st["sinkUri"] == url
    assert st["ceAttributes"] == [{"type": "dev.knative.sources.ping", "source": source}]
    types = {c["type"]: c["status"] for c in st["conditions"]}
    assert types["SinkProvided"] == types["Deployed"] == "True"
    events = await sink.wait_for(2, timeout=20)
    assert {e.type for e in events} == {"dev.knative.sources.ping"}
    assert events[0].attributes["source"] == source
    assert events[0].attributes["team"] == "ops"
    assert json.loads(events[0].data or b"") == {"hello": "kube"}
    assert len({e.id for e in events}) == len(events), "a tick was sent twice"

    # Invalid: both data fields. Not Ready, with Knative's message; it stops firing.
    await plane.apply(
        ns,
        """
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: every2s}
spec:
  schedule: "*/2 * * * * *"
  data: "x"
  dataBase64: "eA=="
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
""",
    )

    async def invalid() -> Any:
        c = await plane.condition(ns, "pingsource", "every2s")
        return c if c and c["status"] == "False" else None

    c = await plane.until(invalid, "invalid PingSource not Ready")
    assert "expected exactly one, got both: spec.data, spec.dataBase64" in c["message"]


APISERVER_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-reader}
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: cm-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-reader}
subjects:
  - {kind: ServiceAccount, name: watcher, namespace: NS}
"""


def apiserversource(name: str, mode: str, sa: str) -> str:
    return f"""
apiVersion: sources.knative.dev/v1
kind: ApiServerSource
metadata: {{name: {name}}}
spec:
  mode: {mode}
  serviceAccountName: {sa}
  resources:
    - apiVersion: v1
      kind: ConfigMap
      selector: {{matchLabels: {{watched: "yes"}}}}
  sink:
    ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
"""


async def test_apiserversource_both_modes_and_rbac(plane: Plane, sinks: SinkServer) -> None:
    sink = sinks.sink("kube-apiserver")
    ns = plane.kube.namespace("apisrc")
    await broker_ready(plane, ns, sink)
    await plane.apply(ns, APISERVER_RBAC.replace("NS", ns))
    await plane.apply(
        ns,
        apiserversource("refs", "Reference", "watcher")
        + "---"
        + apiserversource("objs", "Resource", "watcher"),
    )
    for name in ("refs", "objs"):
        src = await plane.ready(ns, "apiserversource", name)
        assert src["status"]["namespaces"] == [ns]
    prefix = "dev.knative.apiserver.resource."
    assert src["status"]["ceAttributes"] == [
        {"type": prefix + v, "source": plane.kube.server} for v in ("add", "delete", "update")
    ]

    # Not allowed: not Ready, with the reason and Knative's message.
    await plane.apply(ns, apiserversource("denied", "Reference", "nobody"))

    async def denied() -> Any:
        c = await plane.condition(ns, "apiserversource", "denied")
        return c if c and c.get("reason") == "InsufficientPermissions" else None

    c = await plane.until(denied, "ApiServerSource without RBAC not Ready")
    assert c["status"] == "False"
    assert (
        f"User system:serviceaccount:{ns}:nobody cannot get, list, watch resource "
        f'"configmaps" in API group "" in Namespace "{ns}"'
    ) in c["message"]
    # Knative's opt-out annotation skips the check; then it goes, so it sends nothing below.
    skip = "features.knative.dev/apiserversource-skip-permissions-check=true"
    await plane.kubectl("annotate", "-n", ns, "apiserversource", "denied", skip)
    await plane.ready(ns, "apiserversource", "denied")
    await plane.kubectl("delete", "-n", ns, "apiserversource", "denied")

    cm = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched, labels: {watched: "yes"}}\n'
    await plane.apply(ns, cm + "data: {k: one}\n")
    await plane.apply(ns, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ignored}\n")
    await plane.apply(ns, cm + "data: {k: two}\n")
    await plane.kubectl("delete", "-n", ns, "configmap", "watched")
    events = await sink.wait_for(6, timeout=30)
    await asyncio.sleep(0.5)  # nothing more may come (the unlabelled ConfigMap, the denied source)
    assert len(sink.events) == 6, [e.type for e in sink.events]
    by_type = {e.type: e for e in events}
    assert sorted(by_type) == sorted(
        f"dev.knative.apiserver.{m}.{v}"
        for m in ("ref", "resource")
        for v in ("add", "update", "delete")
    )
    subject = f"/apis/v1/namespaces/{ns}/configmaps/watched"
    for e in events:
        assert e.attributes["source"] == plane.kube.server
        assert e.attributes["subject"] == subject
        assert e.attributes["kind"] == "ConfigMap"
        assert e.attributes["apiversion"] == "v1"
        assert e.attributes["name"] == "watched"
        assert e.attributes["namespace"] == ns
        assert e.attributes.get("datacontenttype") == "application/json"
    ref = json.loads(by_type["dev.knative.apiserver.ref.update"].data or b"")
    assert ref == {"kind": "ConfigMap", "namespace": ns, "name": "watched", "apiVersion": "v1"}
    updated = json.loads(by_type["dev.knative.apiserver.resource.update"].data or b"")
    assert updated["data"] == {"k": "two"}
    added = json.loads(by_type["dev.knative.apiserver.resource.add"].data or b"")
    assert added["data"] == {"k": "one"}


@pytest.mark.slow
async def test_apiserversource_resumes_after_a_controller_restart(
    plane: Plane, sinks: SinkServer
) -> None:
    sink = sinks.sink("kube-apiserver-restart")
    ns = plane.kube.namespace("apirestart")
    await broker_ready(plane, ns, sink)
    await plane.apply(ns, APISERVER_RBAC.replace("NS", ns))
    await plane.apply(ns, apiserversource("refs", "Reference", "watcher"))
    await plane.ready(ns, "apiserversource", "refs")
    cm = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: NAME, labels: {watched: "yes"}}\n'
    await plane.apply(ns, cm.replace("NAME", "before"))
    await sink.wait_for(1, timeout=20)

    plane.kill_controller()
    await plane.apply(ns, cm.replace("NAME", "while-down"))  # made while nobody watches
    plane.restart_controller(crash=True)

    await sink.wait_for(2, timeout=45)  # after the dead controller's Lease expired (15 s)
    await asyncio.sleep(1.0)
    names = [json.loads(e.data or b"")["name"] for e in sink.events]
    assert names == ["before", "while-down"], names  # not lost, and no flood of existing ones


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, labels: {app: api}}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      initContainers:
        - {name: init, image: busybox}
      containers:
        - name: api
          image: example/publisher
          env: [{name: KEEP, value: "me"}]
        - {name: sidecar, image: busybox}
"""


def binding(sink: str, extensions: str = "") -> str:
    return f"""
apiVersion: sources.knative.dev/v1
kind: SinkBinding
metadata: {{name: bind-api}}
spec:
  subject: {{apiVersion: apps/v1, kind: Deployment, name: api}}
  sink: {sink}
  {extensions}
"""


def env_of(dep: dict[str, Any]) -> dict[str, dict[str, str]]:
    spec = dep["spec"]["template"]["spec"]
    return {
        c["name"]: {e["name"]: e.get("value", "") for e in c.get("env") or ()}
        for c in spec.get("initContainers", []) + spec["containers"]
    }


async def test_sinkbinding_injects_updates_removes_and_the_example_publishes(
    plane: Plane, sinks: SinkServer
) -> None:
    sink = sinks.sink("kube-binding")
    other = sinks.sink("kube-binding-other")
    ns = plane.kube.namespace("bind")
    url = await broker_ready(plane, ns, sink)
    await plane.apply(ns, DEPLOYMENT)
    broker_ref = "{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}"
    await plane.apply(ns, binding(broker_ref, "ceOverrides: {extensions: {origin: api}}"))
    await plane.ready(ns, "sinkbinding", "bind-api")

    async def env_is(want: str) -> dict[str, dict[str, str]] | None:
        dep = await plane.get(ns, "deployment", "api")
        env = env_of(dep or {})
        return env if all(e.get("K_SINK") == want for e in env.values()) else None

    env = await plane.until(lambda: env_is(url), "K_SINK injected")
    assert env["api"]["KEEP"] == "me"
    assert json.loads(env["api"]["K_CE_OVERRIDES"]) == {"extensions": {"origin": "api"}}

    # The exposed API: the example, as a real process given the values the binding injected.
    publisher = spawn(
        "publisher",
        [sys.executable, str(ROOT / "examples" / "publisher.py"), "--port", "0"],
        plane.root,
        ready=r"publisher listening on (\S+)",
        env={
            **os.environ,
            "K_SINK": env["api"]["K_SINK"],
            "K_CE_OVERRIDES": env["api"]["K_CE_OVERRIDES"],
        },
    )
    try:
        async with httpx.AsyncClient() as http:
            resp = await http.post(f"{publisher.url}/orders", json={"order": 42})
        assert resp.status_code == 202, resp.text
        got = await sink.wait_for(1, timeout=15)
        assert got[0].type == "com.example.order.placed"
        assert got[0].id == resp.json()["id"]
        assert got[0].attributes["origin"] == "api"
        assert json.loads(got[0].data or b"") == {"order": 42}
    finally:
        stop(publisher)

    # The sink's address changes: K_SINK follows.
    await plane.apply(ns, binding(f"{{uri: '{other.url}'}}"))
    env = await plane.until(lambda: env_is(other.url), "K_SINK updated")
    assert env["api"]["K_CE_OVERRIDES"] == ""

    # Deleted: the variables go, the rest stays, and the binding goes once they are out.
    await plane.kubectl("delete", "-n", ns, "sinkbinding", "bind-api", "--wait=false")

    async def unbound() -> dict[str, Any] | None:
        dep = await plane.get(ns, "deployment", "api")
        env = env_of(dep or {})
        clean = all("K_SINK" not in e and "K_CE_OVERRIDES" not in e for e in env.values())
        gone = await plane.get(ns, "sinkbinding", "bind-api") is None
        return dep if clean and gone else None

    dep = await plane.until(unbound, "K_SINK removed and the binding deleted")
    assert env_of(dep)["api"] == {"KEEP": "me"}
    assert "kbroker.dev/sinkbinding" not in (dep["metadata"].get("annotations") or {})


def needs_kn(kube: Kube) -> None:
    if not kube.kn_path.exists():
        pytest.skip("kn not built (bash hack/kube.sh build)")


async def test_kn_source_commands(plane: Plane, sinks: SinkServer) -> None:
    needs_kn(plane.kube)
    sink = sinks.sink("kube-kn")
    ns = plane.kube.namespace("kn")
    await broker_ready(plane, ns, sink)

    async def kn(*args: str) -> str:
        return await asyncio.to_thread(plane.kube.kn, *args, "-n", ns)

    await kn(
        "source",
        "ping",
        "create",
        "beat",
        "--schedule",
        "*/2 * * * * *",
        "--data",
        "hi!",
        "--sink",
        "broker:default",
    )
    await plane.ready(ns, "pingsource", "beat")
    await sink.wait_for(1, timeout=20)
    await kn("source", "ping", "update", "beat", "--data", "bye!", "--ce-override", "who=kn")
    ping = await plane.ready(ns, "pingsource", "beat")
    assert ping["spec"]["data"] == "bye!"
    assert ping["spec"]["ceOverrides"]["extensions"] == {"who": "kn"}
    described = await kn("source", "ping", "describe", "beat")
    assert "*/2 * * * * *" in described and "broker" in described.lower()
    listed = await kn("source", "ping", "list")
    assert re.search(r"beat\s+\*/2 \* \* \* \* \*\s+\S+\s+\S+\s+.*True", listed), listed

    await asyncio.to_thread(
        plane.kube.kubectl,
        "create",
        "-n",
        ns,
        "-f",
        "-",
        stdin=APISERVER_RBAC.replace("NS", ns),
    )
    await kn(
        "source",
        "apiserver",
        "create",
        "cms",
        "--resource",
        "ConfigMap:v1",
        "--mode",
        "Resource",
        "--service-account",
        "watcher",
        "--sink",
        "broker:default",
    )
    api = await plane.ready(ns, "apiserversource", "cms")
    assert api["spec"]["resources"][0]["kind"] == "ConfigMap"
    assert api["spec"]["mode"] == "Resource"

    await plane.apply(ns, DEPLOYMENT)
    await kn(
        "source",
        "binding",
        "create",
        "bind",
        "--subject",
        "Deployment:apps/v1:api",
        "--sink",
        "broker:default",
    )
    await plane.ready(ns, "sinkbinding", "bind")

    listed = await kn("source", "list")
    for name, kind in (("beat", "PingSource"), ("cms", "ApiServerSource"), ("bind", "SinkBinding")):
        assert re.search(rf"^{name}\s+{kind}\s", listed, re.M), listed

    await kn("source", "ping", "delete", "beat")
    assert await plane.get(ns, "pingsource", "beat") is None


@pytest.mark.slow
async def test_controller_needs_no_more_than_the_shipped_rbac(
    plane: Plane, sinks: SinkServer
) -> None:
    """Run as the kbroker-controller ServiceAccount with config/200-rbac.yaml and
    config/210-sources-rbac.yaml only: all three sources work and nothing is forbidden."""
    sink = sinks.sink("kube-sources-rbac")
    for f in ("200-rbac.yaml", "210-sources-rbac.yaml"):
        await plane.kubectl("apply", "-f", str(ROOT / "config" / f))
    token = (
        await plane.kubectl("create", "token", "kbroker-controller", "-n", "kbroker-system")
    ).strip()
    config = json.loads(plane.kube.kubeconfig.read_text())
    config["users"] = [{"name": "kbroker-admin", "user": {"token": token}}]
    sa_kubeconfig = plane.root / "sa-kubeconfig"
    sa_kubeconfig.write_text(json.dumps(config))
    plane.restart_controller(sa_kubeconfig)
    try:
        ns = plane.kube.namespace("srcrbac")
        await broker_ready(plane, ns, sink)
        await plane.apply(ns, APISERVER_RBAC.replace("NS", ns))
        await plane.apply(ns, apiserversource("refs", "Reference", "watcher"))
        await plane.apply(ns, DEPLOYMENT)
        broker_ref = "{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}"
        await plane.apply(ns, binding(broker_ref))
        for kind, name in (("apiserversource", "refs"), ("sinkbinding", "bind-api")):
            await plane.ready(ns, kind, name)
        await plane.apply(
            ns, 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {watched: "yes"}}\n'
        )
        got = await sink.wait_for(1, timeout=20)
        assert got[0].type == "dev.knative.apiserver.ref.add"
        dep = await plane.get(ns, "deployment", "api")
        assert "K_SINK" in env_of(dep or {})["api"]
        forbidden = [x for x in plane.procs[2].tail().splitlines() if "forbidden" in x.lower()]
        assert forbidden == []
    finally:
        plane.restart_controller()


async def test_apiserversource_namespace_selector_and_owner_filter(
    plane: Plane, sinks: SinkServer
) -> None:
    sink = sinks.sink("kube-apiserver-selectors")
    ns = plane.kube.namespace("apisel")
    others = [plane.kube.namespace("apisel-team"), plane.kube.namespace("apisel-team")]
    await broker_ready(plane, ns, sink)
    for other in others:
        await plane.kubectl("label", "namespace", other, "team=blue")
        rbac = APISERVER_RBAC.replace("namespace: NS", f"namespace: {ns}")
        await plane.apply(other, rbac)
    await plane.apply(
        ns,
        """
apiVersion: sources.knative.dev/v1
kind: ApiServerSource
metadata: {name: owned}
spec:
  serviceAccountName: watcher
  namespaceSelector: {matchLabels: {team: blue}}
  owner: {apiVersion: apps/v1, kind: Deployment}
  resources: [{apiVersion: v1, kind: ConfigMap}]
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
""",
    )
    src = await plane.ready(ns, "apiserversource", "owned")
    assert src["status"]["namespaces"] == sorted(others)
    owner = (
        "  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: d, "
        "uid: 6b1c2f4e-0000-4000-8000-000000000001, controller: true}]\n"
    )
    for other in others:
        await plane.apply(
            other, f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n{owner}"
        )
        await plane.apply(other, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: loose}\n")
    await plane.apply(ns, f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n{owner}")
    events = await sink.wait_for(2, timeout=20)
    await asyncio.sleep(0.5)
    assert len(sink.events) == 2, [e.attributes.get("subject") for e in sink.events]
    assert sorted(e.attributes["namespace"] for e in events) == sorted(others)
    assert {e.attributes["name"] for e in events} == {"owned"}
    assert {e.type for e in events} == {"dev.knative.apiserver.ref.add"}


async def test_printer_columns_are_knatives(plane: Plane) -> None:
    ns = plane.kube.namespace("columns")
    await plane.apply(
        ns,
        """
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: p}
spec:
  schedule: "0 0 1 1 *"
  sink: {uri: "http://127.0.0.1:9/"}
""",
    )
    await plane.ready(ns, "pingsource", "p")
    header, row = (await plane.kubectl("get", "-n", ns, "pingsources")).splitlines()[:2]
    assert header.split() == ["NAME", "SINK", "SCHEDULE", "AGE", "READY", "REASON"]
    assert row.split()[:2] == ["p", "http://127.0.0.1:9/"]
    assert row.split()[-1] == "True"
    for kind in ("apiserversources", "sinkbindings"):
        # "No resources found" goes to stderr; the columns are checked on the CRD itself.
        crd = json.loads(
            await plane.kubectl("get", "crd", f"{kind}.sources.knative.dev", "-o", "json")
        )
        columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
        assert columns == ["Sink", "Age", "Ready", "Reason"]
        assert crd["metadata"]["labels"]["duck.knative.dev/source"] == "true"


async def test_sinkbinding_on_a_job_reports_the_immutable_template(plane: Plane) -> None:
    """A Job's pod template cannot change after creation, and kbroker patches subjects after
    the fact (no admission webhook): the binding says so instead of pretending."""
    ns = plane.kube.namespace("bindjob")
    await plane.apply(
        ns,
        """
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
---
apiVersion: sources.knative.dev/v1
kind: SinkBinding
metadata: {name: bind-job}
spec:
  subject: {apiVersion: batch/v1, kind: Job, name: once}
  sink: {uri: "http://127.0.0.1:9/"}
""",
    )

    async def failed() -> Any:
        c = await plane.condition(ns, "sinkbinding", "bind-job", "SinkBindingAvailable")
        return c if c and c.get("reason") == "BindingFailed" else None

    c = await plane.until(failed, "SinkBinding on a Job reports BindingFailed")
    assert "immutable" in c["message"], c
    ready = await plane.condition(ns, "sinkbinding", "bind-job")
    assert ready["status"] == "False" and ready["reason"] == "BindingFailed"


@pytest.mark.slow
async def test_two_controllers_one_sender_and_takeover(plane: Plane, sinks: SinkServer) -> None:
    """Two controllers (a rollout, a partitioned node): only the Lease holder fires; when it dies
    without releasing, the other takes over once the Lease expires."""
    sink = sinks.sink("kube-two-controllers")
    ns = plane.kube.namespace("lease")
    await broker_ready(plane, ns, sink)
    args = [str(a) for a in plane.procs[2].popen.args]  # type: ignore[union-attr]
    args[args.index("--contract-file") + 1] = str(plane.root / "contract-2.json")
    second = spawn("controller", args, plane.root)
    try:
        await plane.apply(
            ns,
            """
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: every-second}
spec:
  schedule: "* * * * * *"
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
""",
        )
        await plane.ready(ns, "pingsource", "every-second")
        await sink.wait_for(4, timeout=20)
        ids = [e.id for e in sink.events]
        assert len(set(ids)) == len(ids), "a tick was fired by both controllers"

        plane.kill_controller()  # dies holding the Lease
        before = len(sink.events)
        await sink.wait_for(before + 3, timeout=35)  # the second takes over within ~15 s
        ids = [e.id for e in sink.events]
        assert len(set(ids)) == len(ids), "a tick was fired twice around the takeover"
        # The whole log: the line can scroll out of tail() on a busy controller.
        assert "lease kbroker-sources acquired" in second.log.read_text(errors="replace")
        await plane.kubectl("delete", "-n", ns, "pingsource", "every-second")
    finally:
        stop(second)  # releases the Lease: the restarted first controller takes it at once
        plane.restart_controller()
