"""Hypothesis as a time-boxed fuzzer for the targets in `fuzz.targets`.

Why hypothesis next to atheris: it needs no compiler or libFuzzer (atheris ships wheels for
x86-64 Linux only), and its strategies reach deep paths by construction: seeds from the corpus
with a few byte edits and dictionary tokens spliced in, token soups, raw bytes. `target()` climbs
each target's progress score. It is not coverage-guided; hack/fuzz.py is.

A failing input is shrunk by hypothesis, then saved into the target's corpus folder as
`crash-<sha1>` so that every later run replays it (test/fuzz/test_fuzz.py), and the failure is
raised as usual.
"""

from __future__ import annotations

import ast
import hashlib
import time
from pathlib import Path

from fuzz.targets import Target
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis import target as climb

BATCH = 40  # examples per hypothesis run: small, so the time box is kept to within a batch


def tokens(dictionary: Path) -> list[bytes]:
    """The entries of a libFuzzer dictionary file (`"text"` lines, C-style escapes)."""
    out: list[bytes] = []
    if not dictionary.exists():
        return out
    for line in dictionary.read_text().splitlines():
        line = line.strip()
        if line.startswith('"') and line.endswith('"'):
            out.append(ast.literal_eval("b" + line))
    return out


@st.composite
def _mutated(draw: st.DrawFn, seeds: list[bytes], words: list[bytes]) -> bytes:
    data = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 4))
        piece = draw(st.binary(max_size=3) | st.sampled_from(words) | st.sampled_from(seeds))
        data = data[:at] + piece + data[at + cut :]
    return data


def inputs(target: Target) -> st.SearchStrategy[bytes]:
    seeds = [p.read_bytes() for p in target.seeds()] or [b""]
    words = tokens(target.dictionary) or [b" "]
    soup = st.lists(st.sampled_from(words) | st.binary(max_size=4), max_size=24)
    return st.one_of(
        _mutated(seeds, words),
        st.tuples(soup, st.sampled_from([b"", b" "])).map(lambda p: p[1].join(p[0])),
        st.binary(max_size=256),
    ).map(lambda data: data[: target.max_len])


def save(target: Target, data: bytes) -> Path:
    """Keep a failing input as a regression seed (named by content, so saving twice is a no-op)."""
    path = target.corpus / f"crash-{hashlib.sha1(data).hexdigest()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def explore(target: Target, seconds: float) -> int:
    """Run `target` on generated inputs for about `seconds`; returns how many it ran."""
    failing: list[bytes] = []
    ran = 0

    @settings(
        max_examples=BATCH,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(inputs(target))
    def one(data: bytes) -> None:
        nonlocal ran
        ran += 1
        try:
            climb(float(target.run(data)), label=target.name)
        except BaseException:
            failing.append(data)  # the last one is hypothesis' shrunk example
            raise

    stop = time.monotonic() + seconds
    while True:
        try:
            one()
        except BaseException:
            if failing:
                print(f"{target.name}: failing input saved as {save(target, failing[-1])}")
            raise
        if time.monotonic() >= stop:
            return ran
