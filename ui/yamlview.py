"""An object as the YAML a user would write, and the difference an edit makes.

The create/edit page shows, beside the form, exactly the text that will be written to the file
(standalone) or sent to the API server (cluster): `written` keeps only what a user writes
(apiVersion, kind, metadata.name/namespace/labels/annotations, spec) and drops what a server fills
in (status, generation, uid, timestamps). Keys keep Knative's order, not the alphabet's, so the
YAML reads like the documentation's examples.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import yaml
from kbroker.ui.ports import KObject

_TOP = ("apiVersion", "kind", "metadata", "spec")
_META = ("name", "namespace", "labels", "annotations")


def written(obj: KObject) -> KObject:
    """What a user writes of `obj`: no status, no server-set metadata, nothing empty."""
    found = obj.get("metadata")
    meta: dict[str, Any] = found if isinstance(found, dict) else {}
    out: KObject = {}
    for key in _TOP:
        if key == "metadata":
            kept = {k: meta[k] for k in _META if meta.get(k) not in (None, "", {}, [])}
            out["metadata"] = kept
        elif obj.get(key) not in (None, ""):
            out[key] = obj[key]
    return out


class _Dumper(yaml.SafeDumper):
    """Block style, lists indented under their key (as Knative's docs and kubectl show them)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _multiline(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _multiline)


def to_yaml(obj: Any) -> str:
    return yaml.dump(
        obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str  # "add" | "del" | "same" | "hunk"
    text: str


def diff(before: str, after: str, context: int = 3) -> list[DiffLine]:
    """A unified diff of two YAML texts, line by line, for the edit page."""
    out: list[DiffLine] = []
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), "current", "edited", n=context, lineterm=""
    )
    for line in lines:
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            out.append(DiffLine("hunk", line))
        elif line.startswith("+"):
            out.append(DiffLine("add", line))
        elif line.startswith("-"):
            out.append(DiffLine("del", line))
        else:
            out.append(DiffLine("same", line))
    return out
