"""The repository stands on its own: nothing points outside it, and every docs link resolves.

A reader who clones the repository gets the README, docs/ and the code, and nothing next to it:
a link or a "see ../shared/..." in a docstring sends them nowhere. So:

- no tracked file outside test/ and .ci/ mentions `../shared` (test/ and .ci/ may name where
  external test data lives on a machine; the product and its docs may not);
- every relative link in README.md and docs/*.md names a file of the repository that exists,
  and an anchor into a Markdown page names one of its headings.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = b"../shared"
EXEMPT = ("test/", ".ci/")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return sorted(p for p in out.split("\0") if p and (ROOT / p).is_file())


def markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """The Markdown without code blocks and code spans, where a `[x](y)` is not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(text: str) -> list[str]:
    body = prose(text)
    return LINK.findall(body) + REFERENCE.findall(body)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"`|\*\*|\*|_(?=\W)|(?<=\W)_", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", text).splitlines():
        m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(text: str, page: Path) -> list[str]:
    """What is wrong with the links of `text`, a Markdown page that lives at `page`."""
    problems = []
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # http:, https:, mailto: ... leave the repository on purpose
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if dest != ROOT and ROOT not in dest.parents:
            problems.append(f"{target}: leaves the repository")
        elif dest != page and not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md":
            headings = anchors(text if dest == page else dest.read_text())
            if anchor not in headings:
                problems.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return problems


def test_no_tracked_file_outside_test_mentions_shared() -> None:
    offenders = []
    for name in tracked_files():
        if name.startswith(EXEMPT):
            continue
        for n, line in enumerate((ROOT / name).read_bytes().split(b"\n"), 1):
            if OUTSIDE in line:
                offenders.append(f"{name}:{n}: {line.decode(errors='replace').strip()}")
    assert offenders == [], "write it in the repository's own words:\n" + "\n".join(offenders)


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page.read_text(), page) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[design](../shared/design/architecture.md)", "leaves the repository"),
        ("see [x](docs/nope.md)", "no such file"),
        ("[tilt](docs/kubernetes.md#no-such-heading)", "no heading"),
        ("[ok](docs/design.md) and [web](https://example.com/x)", None),
        ("[tilt](docs/kubernetes.md#tilt) and [top](#a-page)", None),
        ("`[not a link](nowhere.md)` in code", None),
        ("```sh\necho '[not a link](nowhere.md)'\n```", None),
        ("[ref]: ../shared/reference/knative.md", "leaves the repository"),
    ],
)
def test_the_link_check_itself(text: str, problem: str | None) -> None:
    """The checker finds what it must, on a page as if it sat at the repository's root."""
    found = broken_links(f"# A page\n\n{text}\n", ROOT / "PAGE.md")
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0], found
