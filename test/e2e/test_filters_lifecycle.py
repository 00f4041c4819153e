"""Trigger filters and object lifecycle through the real process: dialects, many triggers, the
folder watcher (add, change, remove, bad YAML), Trigger-before-Broker, status via `kbroker get`.

    tests --write YAML--> config folder <--watch-- kbroker run --HTTP--> sinks
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import yaml
from e2e import knative_yaml as ky
from fixtures.broker import ON_EVERY_CHANNEL, BrokerProcess, StartBroker, make_event
from fixtures.subscriber import SinkServer
from kbroker.core import events

pytestmark = ON_EVERY_CHANNEL


def sent(i: int, **attrs: str) -> events.CloudEvent:
    ev = make_event(f"e{i}")
    ev.attributes.update(attrs)
    return ev


async def test_filter_dialects(start_broker: StartBroker, sinks: SinkServer) -> None:
    names = [
        "exact",
        "prefix",
        "suffix",
        "all",
        "any",
        "not",
        "missing",
        "override",
        "emptyf",
        "legacyany",
        "legacyempty",
        "everything",
    ]
    s = {n: sinks.sink(n) for n in names}
    proc = await start_broker(
        {
            "f.yaml": ky.dump(
                ky.broker(),
                ky.trigger(
                    "exact", s["exact"].url, filters=[{"exact": {"type": "a.b.c", "source": "/x"}}]
                ),
                ky.trigger("prefix", s["prefix"].url, filters=[{"prefix": {"type": "a.b"}}]),
                ky.trigger("suffix", s["suffix"].url, filters=[{"suffix": {"type": ".c"}}]),
                ky.trigger(
                    "all",
                    s["all"].url,
                    filters=[{"all": [{"prefix": {"type": "a."}}, {"exact": {"source": "/y"}}]}],
                ),
                ky.trigger(
                    "any",
                    s["any"].url,
                    filters=[{"any": [{"exact": {"type": "zzz"}}, {"exact": {"source": "/y"}}]}],
                ),
                ky.trigger("not", s["not"].url, filters=[{"not": {"prefix": {"type": "a."}}}]),
                ky.trigger("missing", s["missing"].url, filters=[{"exact": {"myext": "v"}}]),
                ky.trigger(
                    "override",
                    s["override"].url,
                    attributes={"type": "never"},
                    filters=[{"exact": {"type": "a.b.c"}}],
                ),
                ky.trigger("emptyf", s["emptyf"].url, attributes={"type": "q.r"}, filters=[]),
                ky.trigger("legacyany", s["legacyany"].url, attributes={"myext": ""}),
                ky.trigger(
                    "legacyempty",
                    s["legacyempty"].url,
                    attributes={"type": "a.b.c", "source": "/x"},
                ),
                ky.trigger("everything", s["everything"].url),
            )
        }
    )
    for n in names:
        await proc.wait_ready_object("Trigger", n)
    batch = [
        sent(1, type="a.b.c", source="/x"),
        sent(2, type="a.b.d", source="/y"),
        sent(3, type="q.r", source="/y", myext="v"),
        sent(4, type="z.c", source="/z"),
    ]
    for ev in batch:
        assert (await proc.send(ev)).status_code == 202
    await s["everything"].wait_for(4)
    await asyncio.sleep(0.5)
    got = {n: sorted(s[n].ids()) for n in names}
    expected = {
        "exact": ["e1"],
        "prefix": ["e1", "e2"],
        "suffix": ["e1", "e4"],
        "all": ["e2"],
        "any": ["e2", "e3"],
        "not": ["e3", "e4"],
        "missing": ["e3"],  # absent attribute never matches
        "override": ["e1"],  # non-empty filters win over filter.attributes
        "emptyf": ["e3"],  # empty filters: the legacy filter applies
        "legacyany": ["e3"],  # "" = present
        "legacyempty": ["e1"],
        "everything": ["e1", "e2", "e3", "e4"],
    }
    assert got == expected, proc.log_text()


async def test_trigger_before_broker_then_hot_reload(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    first, second = sinks.sink("first"), sinks.sink("second")
    proc = await start_broker(
        {"t.yaml": ky.dump(ky.trigger("t", first.url, attributes={"type": "x"}))}
    )

    async def not_ready_reason() -> bool:
        cond = await proc.condition("Trigger", "t", "BrokerReady")
        return (
            cond is not None
            and cond["status"] == "False"
            and cond["reason"] == "BrokerDoesNotExist"
        )

    await proc.until(not_ready_reason, 30, "Trigger without Broker should say BrokerDoesNotExist")
    proc.write("b.yaml", ky.dump(ky.broker()))
    await proc.wait_ready_object("Trigger", "t")
    assert (await proc.send(sent(1, type="x"))).status_code == 202
    await first.wait_for(1)

    # Change the subscriber and the filter: takes effect without a restart.
    proc.write("t.yaml", ky.dump(ky.trigger("t", second.url, attributes={"type": "y"})))

    async def switched() -> bool:
        obj = await proc.object_status("Trigger", "t")
        return obj is not None and obj["status"].get("subscriberUri") == second.url

    await proc.until(switched, 30, "subscriber change not applied")
    await proc.send(sent(2, type="x"))
    await proc.send(sent(3, type="y"))
    await second.wait_for(1)
    await asyncio.sleep(0.3)
    assert second.ids() == ["e3"] and first.ids() == ["e1"]

    # Remove the Trigger: nothing more is delivered.
    proc.remove("t.yaml")

    async def gone() -> bool:
        return await proc.object_status("Trigger", "t") is None

    await proc.until(gone, 30, "removed Trigger still listed")
    await proc.send(sent(4, type="y"))
    await asyncio.sleep(0.5)
    assert second.ids() == ["e3"]


async def test_bad_objects_are_reported_and_kept_out(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    good = sinks.sink("good")
    proc = await start_broker(
        {
            "good.yaml": ky.dump(ky.broker(), ky.trigger("good", good.url)),
            "broken.yaml": "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: [oops\n",
            "bad.yaml": ky.dump(
                ky.trigger("bad", good.url, attributes={"Bad-Name": "x"}),
                ky.trigger(
                    "twodialects",
                    good.url,
                    filters=[{"exact": {"type": "a"}, "prefix": {"type": "b"}}],
                ),
            ),
        }
    )
    await proc.wait_ready_object("Trigger", "good")
    status = await proc.status()
    problems = "\n".join(status["problems"])
    assert "broken.yaml" in problems
    assert "Bad-Name" in problems or "bad" in problems
    assert "multiple dialects" in problems
    for name in ("bad", "twodialects"):
        cond = await proc.condition("Trigger", name)
        assert cond is None or cond["status"] != "True"
    assert (await proc.send(sent(1))).status_code == 202
    await good.wait_for(1)
    assert (await proc.client.get(f"{proc.base}/readyz")).status_code == 200


async def test_immutable_broker_field_change_is_refused(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    s, other = sinks.sink("s"), sinks.sink("other")
    proc = await start_broker(
        {"o.yaml": ky.dump(ky.broker(), ky.broker("b2"), ky.trigger("t", s.url))}
    )
    await proc.wait_ready_object("Trigger", "t")
    proc.write(
        "o.yaml", ky.dump(ky.broker(), ky.broker("b2"), ky.trigger("t", other.url, broker="b2"))
    )

    async def reported() -> bool:
        return any("Immutable" in p or "immutable" in p for p in (await proc.status())["problems"])

    await proc.until(reported, 30, "changing spec.broker must be reported")
    await proc.send(sent(1))
    await s.wait_for(1)  # the accepted version keeps working


async def test_kbroker_get_prints_status(start_broker: StartBroker, sinks: SinkServer) -> None:
    s = sinks.sink("s")
    proc = await start_broker({"o.yaml": ky.dump(ky.broker(), ky.trigger("t", s.url))})
    await proc.wait_ready_object("Trigger", "t")

    def get(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "kbroker", "get", *args, "--server", proc.base],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout

    table = await asyncio.to_thread(get, "brokers")
    assert "default" in table and proc.broker_url() in table and "True" in table
    yaml_out = await asyncio.to_thread(get, "triggers", "t", "-o", "yaml")
    assert f"subscriberUri: {s.url}" in yaml_out
    assert "type: SubscriberResolved" in yaml_out


def kbroker_get(server: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "kbroker", "get", *args, "--server", server],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout


async def test_kbroker_get_shows_objects_as_written(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    s = sinks.sink("s")
    broker = ky.broker(delivery={"retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT0.1S"})
    broker["metadata"]["labels"] = {"team": "a"}
    broker["metadata"]["annotations"] = {"note": "kept as written"}
    trig = ky.trigger(
        "t",
        s.url,
        filters=[{"prefix": {"type": "com.example"}}, {"not": {"exact": {"source": "x"}}}],
        delivery={"retry": 1, "timeout": "PT5S"},
        annotations={"kbroker.dev/max-in-flight": "7", "other": "yes"},
    )
    trig["metadata"]["labels"] = {"app": "demo"}
    proc = await start_broker({"o.yaml": ky.dump(broker, trig)})
    await proc.wait_ready_object("Trigger", "t")

    shown_t = yaml.safe_load(
        await asyncio.to_thread(kbroker_get, proc.base, "trigger", "t", "-o", "yaml")
    )
    listed = json.loads(await asyncio.to_thread(kbroker_get, proc.base, "brokers", "-o", "json"))
    [shown_b] = listed["items"]
    for shown, written in ((shown_t, trig), (shown_b, broker)):
        assert (shown["apiVersion"], shown["kind"]) == (written["apiVersion"], written["kind"])
        assert shown["spec"] == written["spec"]
        for field in ("name", "namespace", "labels", "annotations"):
            assert shown["metadata"][field] == written["metadata"][field]
        assert shown["metadata"]["generation"] == 1
        assert shown["status"]["conditions"]
    table = await asyncio.to_thread(kbroker_get, proc.base, "triggers")
    assert "default" in table.splitlines()[1].split()[2]  # BROKER column, from the spec


async def condition_times(proc: BrokerProcess, kind: str, name: str) -> dict[str, str]:
    obj = await proc.object_status(kind, name)
    assert obj is not None
    return {c["type"]: c["lastTransitionTime"] for c in obj["status"]["conditions"]}


async def test_last_transition_time_is_when_the_condition_changed(
    start_broker: StartBroker,
) -> None:
    # The Trigger delivers to another Broker, so removing that Broker makes its subscriber
    # unresolvable while nothing about the Trigger itself changes.
    ref = {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "other"}}
    trig = ky.trigger("t", "http://unused.invalid/")
    trig["spec"]["subscriber"] = ref
    proc = await start_broker(
        {"a.yaml": ky.dump(ky.broker(), trig), "other.yaml": ky.dump(ky.broker("other"))}
    )
    await proc.wait_ready_object("Trigger", "t")
    first = await condition_times(proc, "Trigger", "t")
    await asyncio.sleep(1.1)  # the times have a resolution of one second
    assert await condition_times(proc, "Trigger", "t") == first

    await proc.restart()
    await proc.wait_ready_object("Trigger", "t")
    assert await condition_times(proc, "Trigger", "t") == first

    proc.remove("other.yaml")

    async def unresolved() -> bool:
        cond = await proc.condition("Trigger", "t", "SubscriberResolved")
        return cond is not None and cond["status"] == "False"

    await proc.until(unresolved, 30, "SubscriberResolved never became False")
    after = await condition_times(proc, "Trigger", "t")
    assert after["SubscriberResolved"] > first["SubscriberResolved"]
    assert after["Ready"] > first["Ready"]
    assert after["BrokerReady"] == first["BrokerReady"]
