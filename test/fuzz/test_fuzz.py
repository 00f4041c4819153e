"""Fuzzing inside `make test`: replay every kept seed, then fuzz each target for a few seconds.

The seeds in corpus/<target>/ are interesting inputs and every failure any fuzzer ever found; they
replay on every run, so a fixed bug stays fixed. Then each target is fuzzed: coverage-guided with
atheris when it is installed (hack/fuzz.py, in a child process), and with hypothesis strategies
either way. `--fuzz-seconds` (test/fixtures/fuzz.py) is the total time box, split evenly
between targets; a failure found is saved into the corpus before the test fails.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from fuzz import explore, targets
from fuzz.targets import TARGETS, Target, join_message, split_message
from kbroker.core import events
from kbroker.core.events import CloudEvent

ROOT = Path(__file__).resolve().parents[2]
SEEDS = [(name, path) for name, t in TARGETS.items() for path in t.seeds()]
ATHERIS = importlib.util.find_spec("atheris") is not None


def load_runner() -> Any:
    """hack/fuzz.py as a module (its name would clash with this package's)."""
    spec = importlib.util.spec_from_file_location("hack_fuzz", ROOT / "hack" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = load_runner()


@pytest.mark.parametrize(("name", "seed"), SEEDS, ids=[f"{n}/{p.name}" for n, p in SEEDS])
def test_seed_replays(name: str, seed: Path) -> None:
    TARGETS[name].run(seed.read_bytes())


def test_every_target_has_seeds_and_a_dictionary() -> None:
    for target in TARGETS.values():
        assert len(target.seeds()) >= 5, target.name
        assert explore.tokens(target.dictionary), target.name


def share(total: float) -> float:
    return total / len(TARGETS) / (2 if ATHERIS else 1)


@pytest.mark.parametrize("name", list(TARGETS))
def test_hypothesis_fuzz(name: str, fuzz_seconds: float) -> None:
    assert explore.explore(TARGETS[name], share(fuzz_seconds)) > 0


@pytest.mark.skipif(not ATHERIS, reason="atheris is not installed (x86-64 Linux wheels only)")
@pytest.mark.parametrize("name", list(TARGETS))
def test_coverage_guided_fuzz(name: str, fuzz_seconds: float, tmp_path: Path) -> None:
    passed, output, saved = runner.fuzz_one(name, share(fuzz_seconds), tmp_path)
    assert passed, f"saved as {[str(p) for p in saved]}\n{output[-4000:]}"


# --- the harness itself: each part must be able to report a failure ----------------------------


@pytest.mark.parametrize(
    ("data", "headers", "body"),
    [
        (b"", [], None),
        (b"a: 1\nb:2\nc\n", [(b"a", b"1"), (b"b", b"2"), (b"c", None)], None),
        (b"a: 1\n\n", [(b"a", b"1")], b""),
        (b"a:  x: y\n\nbody\n\nmore", [(b"a", b" x: y")], b"body\n\nmore"),
        (b"\n\n{}", [], b"{}"),
    ],
)
def test_split_message(
    data: bytes, headers: list[tuple[bytes, bytes | None]], body: bytes | None
) -> None:
    assert split_message(data) == (headers, body)


def test_join_message_is_split_messages_inverse() -> None:
    headers = [("ce-id", "1"), ("content-type", "text/plain")]
    assert split_message(join_message(headers, b"x\n\ny")) == (
        [(b"ce-id", b"1"), (b"content-type", b"text/plain")],
        b"x\n\ny",
    )


def failing_target(home: Path) -> Target:
    (home / "corpus" / "fake").mkdir(parents=True)
    (home / "corpus" / "fake" / "seed").write_bytes(b"abc")
    (home / "dicts").mkdir()
    (home / "dicts" / "fake.dict").write_text('"X"\n')

    def run(data: bytes) -> int:
        assert b"X" not in data, "found the bug"
        return len(data)

    return Target("fake", run, 64, home)


def test_explore_saves_the_failing_input_as_a_seed(tmp_path: Path) -> None:
    target = failing_target(tmp_path)
    with pytest.raises(AssertionError, match="found the bug"):
        explore.explore(target, 30)
    crashes = [p for p in target.seeds() if p.name.startswith("crash-")]
    assert len(crashes) == 1 and b"X" in crashes[0].read_bytes()


def test_collect_keeps_only_failing_inputs(tmp_path: Path) -> None:
    artifacts, corpus = tmp_path / "a", tmp_path / "c"
    artifacts.mkdir()
    (artifacts / "crash-123").write_bytes(b"boom")
    (artifacts / "timeout-9").write_bytes(b"slow")
    (artifacts / "fuzz-0.log").write_bytes(b"log")
    saved = runner.collect(artifacts, corpus)
    assert sorted(p.name.split("-")[0] for p in saved) == ["crash", "timeout"]
    assert sorted(p.read_bytes() for p in corpus.iterdir()) == [b"boom", b"slow"]


@pytest.mark.parametrize(
    ("name", "seed", "function", "broken"),
    [
        # A decoder raising outside its error model must escape the target.
        ("http", "binary-json", "decode_http", "raise"),
        ("kafka", "binary", "from_kafka", "raise"),
        ("json", "minimal", "from_json", "raise"),
        # A lossy encoder must break a round trip.
        ("http", "binary-extensions", "encode_binary", "lossy"),
        ("kafka", "binary", "to_kafka", "lossy"),
        ("json", "full", "encode_structured", "lossy_structured"),
    ],
)
def test_codec_targets_see_a_broken_codec(
    monkeypatch: pytest.MonkeyPatch, name: str, seed: str, function: str, broken: str
) -> None:
    original = getattr(events, function)

    def raising(*args: Any) -> Any:
        raise KeyError("escaped the error model")

    def lossy(*args: Any) -> Any:
        *front, headers, body = original(*args)
        return (*front, [h for h in headers if "partitionkey" not in h[0]], body)

    def lossy_structured(event: CloudEvent) -> Any:
        headers, body = original(event)
        return headers, body.replace(b'"n":7', b'"n":8')

    fake = {"raise": raising, "lossy": lossy, "lossy_structured": lossy_structured}[broken]
    monkeypatch.setattr(events, function, fake)
    with pytest.raises((KeyError, AssertionError)):
        TARGETS[name].run((TARGETS[name].corpus / seed).read_bytes())


@pytest.mark.parametrize(
    ("function", "fake"),
    [
        ("parse", lambda *a, **k: (_ for _ in ()).throw(KeyError("escaped"))),
        ("to_source", lambda tree: "TRUE"),
        ("compile_filter", lambda text: lambda attributes: True),
    ],
)
def test_cesql_target_sees_a_broken_parser_or_compiler(
    monkeypatch: pytest.MonkeyPatch, function: str, fake: Any
) -> None:
    monkeypatch.setattr(targets, function, fake)
    with pytest.raises((KeyError, AssertionError)):
        TARGETS["cesql"].run((TARGETS["cesql"].corpus / "expr00").read_bytes())
