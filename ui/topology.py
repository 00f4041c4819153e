"""A Broker's topology as server-computed SVG: sources seen → broker → triggers → subscribers.

The graph is a fixed layered DAG, so positions are computed here (columns, evenly spaced rows)
and no layout library or client script is needed. What it shows comes from the running contract
and the events the broker has actually stored: producers by the `source` attribute seen, every
Trigger (Ready or not, never dropped for having a filter we cannot summarise), each Trigger's
filter summary ("expression" when it is more than exact matches), its resolved subscriber, and its
dead-letter sink as a dashed edge. Triggers that are failing carry a red mark; every Trigger node
links to its page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape

from kbroker.core.contract import Contract, Trigger
from kbroker.core.outcomes import TriggerRecords
from kbroker.ui import filtertext
from kbroker.ui import objects_view as ov
from kbroker.ui.ports import KObject

NODE_W = 190
NODE_H = 40
GAP = 14
COLUMNS = (10, 250, 490, 770, 770)  # sources, broker, triggers, subscribers, (DLS share col 4)
WIDTH = 980
MAX_SOURCES = 8
LABEL_CHARS = 28


@dataclass(slots=True)
class Node:
    key: str
    label: str
    sub: str = ""
    href: str = ""
    kind: str = "plain"  # source | broker | trigger | subscriber | dls
    bad: bool = False
    x: float = 0
    y: float = 0


@dataclass(slots=True)
class Edge:
    a: str
    b: str
    dashed: bool = False
    label: str = ""


@dataclass(slots=True)
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    height: float = 0


def _short(text: str, n: int = LABEL_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def summary(t: Trigger | None) -> str:
    if t is None:
        return "not in force"
    if not t.filters:
        return "every event"
    if filtertext.is_expression(t.filters):
        return "expression, see test"
    types = filtertext.types_of(t.filters)
    if types is not None and len(types) <= 2:
        return "type " + " | ".join(sorted(types))
    return filtertext.describe(t.filters)


def _destination_label(uri: str, contract: Contract) -> str:
    for b in contract.brokers:
        if b.address.rstrip("/") == uri.rstrip("/"):
            return f"Broker {b.namespace}/{b.name}"
    return uri


def build(
    namespace: str,
    broker: str,
    triggers: Sequence[KObject],
    contract: Contract,
    sources: Sequence[str],
    records: Mapping[tuple[str, str], TriggerRecords],
    base: str,
) -> Graph:
    g = Graph()
    shown_sources = list(sources[:MAX_SOURCES])
    if len(sources) > MAX_SOURCES:
        shown_sources.append(f"{len(sources) - MAX_SOURCES} more sources")
    if not sources:
        shown_sources = ["no events seen yet"]
    cols: list[list[Node]] = [[], [], [], []]
    for s in shown_sources:
        n = Node(f"src:{s}", _short(s), kind="source")
        cols[0].append(n)
        g.edges.append(Edge(n.key, "broker"))
    cols[1].append(
        Node(
            "broker",
            _short(f"{namespace}/{broker}"),
            "Broker",
            f"{base}/brokers/{namespace}/{broker}",
            "broker",
        )
    )
    in_force = {t.name: t for t in contract.triggers_of(f"{namespace}/{broker}")}
    seen_dest: dict[str, Node] = {}
    for obj in sorted(triggers, key=ov.name):
        name = ov.name(obj)
        t = in_force.get(name)
        rec = records.get((namespace, name))
        failing = ov.readiness(obj).ready is not True or (
            rec is not None and rec.last_failure is not None and rec.in_retry > 0
        )
        tn = Node(
            f"t:{name}",
            _short(name),
            _short(summary(t)),
            f"{base}/triggers/{namespace}/{name}",
            "trigger",
            bad=failing,
        )
        cols[2].append(tn)
        g.edges.append(Edge("broker", tn.key))
        sub_uri = t.subscriber_uri if t is not None else _spec_subscriber(obj)
        dests = [(sub_uri, False)]
        if t is not None and t.delivery.dead_letter_uri:
            dests.append((t.delivery.dead_letter_uri, True))
        for uri, dashed in dests:
            if not uri:
                continue
            node = seen_dest.get(uri)
            if node is None:
                label = _destination_label(uri, contract)
                node = Node(
                    f"d:{uri}",
                    _short(label),
                    "dead-letter sink" if dashed else "subscriber",
                    kind="dls" if dashed else "subscriber",
                )
                seen_dest[uri] = node
                cols[3].append(node)
            g.edges.append(Edge(tn.key, node.key, dashed=dashed))
    tallest = max(len(c) for c in cols)
    g.height = max(1, tallest) * (NODE_H + GAP) + GAP
    for ci, col in enumerate(cols):
        top = (g.height - len(col) * (NODE_H + GAP) + GAP) / 2
        for i, n in enumerate(col):
            n.x, n.y = COLUMNS[ci], top + i * (NODE_H + GAP)
            g.nodes[n.key] = n
    return g


def _spec_subscriber(obj: KObject) -> str:
    sub = ov.spec(obj).get("subscriber")
    if isinstance(sub, dict):
        if sub.get("uri") and not sub.get("ref"):
            return str(sub["uri"])
        ref = sub.get("ref")
        if isinstance(ref, dict):
            return f"{ref.get('kind', '')}/{ref.get('name', '')}"
    return ""


def svg(g: Graph, title: str) -> str:
    """The graph as an accessible inline SVG (a title, links that are focusable)."""
    h = int(g.height)
    out = [
        f'<svg class="topology" role="img" aria-labelledby="topology-title" '
        f'viewBox="0 0 {WIDTH} {h}" width="100%" style="max-width:{WIDTH}px">',
        f'<title id="topology-title">{escape(title)}</title>',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#57606a"/></marker></defs>',
    ]
    for e in g.edges:
        a, b = g.nodes.get(e.a), g.nodes.get(e.b)
        if a is None or b is None:
            continue
        x1, y1 = a.x + NODE_W, a.y + NODE_H / 2
        x2, y2 = b.x, b.y + NODE_H / 2
        mid = (x1 + x2) / 2
        dash = ' stroke-dasharray="6 4"' if e.dashed else ""
        colour = "#b3261e" if e.dashed else "#57606a"
        out.append(
            f'<path d="M {x1:.0f} {y1:.0f} C {mid:.0f} {y1:.0f}, {mid:.0f} {y2:.0f}, '
            f'{x2:.0f} {y2:.0f}" fill="none" stroke="{colour}"{dash} marker-end="url(#arrow)"/>'
        )
    fills = {
        "source": "#eef2f7",
        "broker": "#dbe9ff",
        "trigger": "#ffffff",
        "subscriber": "#eaf6ec",
        "dls": "#fdeceb",
    }
    for n in g.nodes.values():
        stroke = "#b3261e" if n.bad else "#8c959f"
        rect = (
            f'<rect x="{n.x:.0f}" y="{n.y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="6" '
            f'fill="{fills.get(n.kind, "#fff")}" stroke="{stroke}" '
            f'stroke-width="{2 if n.bad else 1}"/>'
        )
        text = (
            f'<text x="{n.x + 8:.0f}" y="{n.y + 16:.0f}" font-weight="600">{escape(n.label)}</text>'
        )
        if n.sub:
            text += (
                f'<text x="{n.x + 8:.0f}" y="{n.y + 32:.0f}" fill="#57606a">{escape(n.sub)}</text>'
            )
        if n.bad:
            text += (
                f'<circle cx="{n.x + NODE_W - 10:.0f}" cy="{n.y + 10:.0f}" r="5" fill="#b3261e">'
                "<title>failing</title></circle>"
            )
        body = rect + text
        if n.href:
            label = escape(f"{n.kind} {n.label}")
            body = f'<a href="{escape(n.href)}" aria-label="{label}">{body}</a>'
        out.append(f'<g class="node {n.kind}">{body}</g>')
    out.append("</svg>")
    return "\n".join(out)
