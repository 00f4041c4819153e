"""Every command in README.md and docs/*.md produces what the text around it says.

The commands are read from the Markdown itself (```sh and ```console blocks), never copied into
this file, so editing a command re-checks it. Each one is either run here, against a real
`kbroker run` started from the Makefile's `run` recipe (on a free port, with its own data folder)
and the tour's real subscriber (examples/subscriber.py), or named in `RULES` as deliberately not
run, with the reason. A command that no rule claims fails the test until someone classifies it.

What "what the text says" means, per kind of command:

- a `# HTTP/1.1 400 Bad Request ... missing required attribute 'source'` line under a command:
  the status line must be exactly the first part, and each part after `...` must appear in the
  answer, in order; other `# ...` lines under a command must appear in its output the same way;
- a console block (`$ cmd` then its output): the output lines, exactly;
- `kbroker get`: exits 0 and shows the Broker and Triggers the tour's text names, Ready;
- an event sent to the broker: it reaches the subscriber, and the tour's sentences about the
  reply, the retries and the dead-letter sink hold for it.

Rewrites, the only ones: `http://127.0.0.1:8080` becomes the test broker's URL, `.venv/bin/kbroker`
(or a bare `kbroker` in a console block) this environment's executable, `kbroker get` gets
`--server`, and the examples' subscriber port 8099 becomes a free port (in a copy of examples/).
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from docs.markdown_commands import Command, commands_in, untagged_commands

ROOT = Path(__file__).resolve().parents[2]
KBROKER = Path(sys.executable).parent / "kbroker"
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
README_BROKER = "http://127.0.0.1:8080"
README_SUBSCRIBER = "127.0.0.1:8099"


def all_commands() -> list[Command]:
    return [c for page in PAGES for c in commands_in(page, (ROOT / page).read_text())]


# --- the running tour: broker and subscriber -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_recipe() -> list[str]:
    """The Makefile's `run` recipe as argv: what `make run` starts."""
    m = re.search(r"^run:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert m, "Makefile has no run recipe"
    return shlex.split(m.group(1))


@dataclass
class Tour:
    base: str
    subscriber_port: int
    subscriber_out: Path
    workdir: Path
    triggers: dict[str, str]  # Trigger name -> the subscriber path it delivers to

    def received(self, since: int = 0) -> list[tuple[str, dict[str, str], str]]:
        """(path, ce attributes, data) of each delivery the subscriber printed, from `since` on."""
        out = []
        text = self.subscriber_out.read_text()
        # The subscriber may be writing its last line right now: only whole lines count.
        for line in text[: text.rfind("\n") + 1].splitlines()[since:]:
            m = re.match(r"^(/\S*)\s+(\{.*\}) data=(.*)$", line)
            if m:
                out.append((m.group(1), json.loads(m.group(2)), m.group(3)))
        return out

    def lines(self) -> int:
        return self.subscriber_out.read_text().count("\n")


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tour]:
    root = tmp_path_factory.mktemp("tour")
    port = free_port()
    config = root / "examples"
    config.mkdir()
    for src in (ROOT / "examples").glob("*.yaml"):
        (config / src.name).write_text(
            src.read_text().replace(README_SUBSCRIBER, f"127.0.0.1:{port}")
        )
    triggers = {
        doc["metadata"]["name"]: httpx.URL(doc["spec"]["subscriber"]["uri"]).path
        for src in config.glob("*.yaml")
        for doc in yaml.safe_load_all(src.read_text())
        if doc and doc.get("kind") == "Trigger"
    }
    out = root / "subscriber.out"
    recipe = run_recipe()
    assert recipe[:4] == ["$(VENV)/bin/kbroker", "run", "--config", "examples/"], recipe
    rest = recipe[4:]
    if "--data" in rest:  # the recipe's data folder, moved into this test's own folder
        rest[rest.index("--data") + 1] = str(root / "data")
    argv = [str(KBROKER), "run", "--config", str(config), *rest, "--port", "0"]
    with out.open("wb") as sub_out, (root / "broker.log").open("wb") as log:
        sub = subprocess.Popen(
            [sys.executable, str(ROOT / "examples/subscriber.py"), "--port", str(port)],
            stdout=sub_out,
            stderr=subprocess.STDOUT,
        )
        broker = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, cwd=root)
    try:
        assert broker.stdout is not None
        ready = broker.stdout.readline().decode().strip()
        assert ready.startswith("kbroker ready on "), (root / "broker.log").read_text()
        base = ready.removeprefix("kbroker ready on ")
        wait_for(lambda: _ok(f"{base}/readyz"), "GET /readyz answered 200")
        wait_for(lambda: "listening" in out.read_text(), "the subscriber listens")
        work = root / "work"
        work.mkdir()
        yield Tour(base, port, out, work, triggers)
    finally:
        for proc in (broker, sub):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if broker.stdout is not None:
            broker.stdout.close()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


# --- running one command -------------------------------------------------------------------------


def rewrite(cmd: str, tour: Tour) -> str:
    cmd = cmd.replace(README_BROKER, tour.base)
    cmd = re.sub(r"^(\.venv/bin/)?kbroker(?= )", str(KBROKER), cmd)
    if re.match(rf"^{re.escape(str(KBROKER))} get ", cmd) and "--server" not in cmd:
        cmd += f" --server {tour.base}"
    return cmd


def shell(cmd: str, tour: Tour, merged: bool = False) -> subprocess.CompletedProcess[str]:
    """Run one command line; `merged` joins stderr to stdout, as a terminal shows them."""
    return subprocess.run(
        ["bash", "-c", rewrite(cmd, tour)],
        cwd=tour.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        text=True,
        timeout=60,
    )


def run(cmd: Command, tour: Tour) -> subprocess.CompletedProcess[str]:
    """Run `cmd` after the earlier file-writing lines of its block (so it runs on its own too)."""
    for earlier in cmd.before:
        if re.match(r"^echo .*>\s*\S+$", earlier):
            assert shell(earlier, tour).returncode == 0, earlier
    done = shell(cmd.text, tour, merged=cmd.console)
    assert done.returncode == 0, f"{cmd.text}\nexit {done.returncode}\n{done.stdout}{done.stderr}"
    return done


def shows(expected: str, output: str) -> bool:
    """Each `...`-separated part of `expected` appears in `output`, in this order."""
    at = 0
    for part in (p.strip() for p in expected.split("...")):
        at = output.find(part, at)
        if at < 0:
            return False
        at += len(part)
    return True


def check_output(cmd: Command, tour: Tour) -> None:
    done = run(cmd, tour)
    for line in cmd.expected:
        assert shows(line, done.stdout), f"{cmd.text}: no {line!r} in\n{done.stdout}"


def check_console(cmd: Command, tour: Tour) -> None:
    done = run(cmd, tour)
    got = [line.rstrip() for line in done.stdout.splitlines()]
    assert got == [line.rstrip() for line in cmd.expected], cmd.text


def check_http(cmd: Command, tour: Tour) -> None:
    since = tour.lines()
    done = run(cmd, tour)
    status = done.stdout.splitlines()[0].strip()
    statuses = [e for e in cmd.expected if e.startswith("HTTP/")]
    assert statuses, f"{cmd}: says no status line"
    for line in statuses:
        assert status == line.split("...")[0].strip(), f"{cmd.text}\n{done.stdout}"
        assert shows(line, done.stdout), f"{cmd.text}: no {line!r} in\n{done.stdout}"
    if status.split()[1] == "202":
        ce = dict(re.findall(r"-H '(ce-[\w-]+): ([^']*)'", cmd.text))
        check_delivered(cmd, tour, since, ce["ce-type"], 1, ce.get("ce-id"))


def check_send(cmd: Command, tour: Tour) -> None:
    since = tour.lines()
    run(cmd, tour)
    args = shlex.split(cmd.text)
    count = int(args[args.index("--count") + 1]) if "--count" in args else 1
    check_delivered(cmd, tour, since, args[args.index("--type") + 1], count, None)


# Sentences of the tour about what happens to an event, with what each one is checked against.
REPLY = re.compile(
    r"The `([\w-]+)` subscriber receives it and replies with a `([\w.]+)` event, which the "
    r"broker routes to `([\w-]+)`"
)
BATCH = re.compile(r"a batch of (\w+) ")
DEAD_LETTER = re.compile(r"after one attempt and (\w+) retries the event reaches `(/[\w-]+)`")
CLAIMS = (REPLY, BATCH, DEAD_LETTER)


def check_delivered(
    cmd: Command, tour: Tour, since: int, ce_type: str, count: int, ce_id: str | None
) -> None:
    """The event(s) reached the subscriber, and the tour's sentences about them hold."""

    def of_type(t: str) -> list[tuple[str, dict[str, str], str]]:
        return [r for r in tour.received(since) if r[1].get("type") == t]

    wait_for(lambda: len(of_type(ce_type)) >= count, f"{count} x {ce_type} delivered ({cmd})")
    reply = REPLY.search(cmd.prose)
    if reply and ce_id is not None:
        trigger, reply_type, routed_to = reply.groups()
        assert any(p == tour.triggers[trigger] for p, *_ in of_type(ce_type)), cmd.prose
        wait_for(
            lambda: any(
                p == tour.triggers[routed_to] and ce_id in data
                for p, _, data in of_type(reply_type)
            ),
            f"the reply to {ce_id} reached {routed_to}",
        )
    batch = BATCH.search(cmd.prose)
    if batch and "--mode batch" in cmd.text:
        assert count == WORDS[batch.group(1)], f"{cmd.prose!r} vs --count {count}"
        time.sleep(0.5)  # no duplicates trickle in
        assert len(of_type(ce_type)) == count
    dead = DEAD_LETTER.search(cmd.prose)
    if dead:
        dls = dead.group(2)
        wait_for(lambda: any(p == dls for p, *_ in of_type(ce_type)), f"{ce_type} reached {dls}")
        attempts = [r for r in of_type(ce_type) if r[0] != dls]
        assert len(attempts) == 1 + WORDS[dead.group(1)], attempts
        [(_, attrs, _)] = [r for r in of_type(ce_type) if r[0] == dls]
        named = re.findall(r"`(knativeerror\w+)`", cmd.prose)
        assert named and all(a in attrs for a in named), (named, attrs)
        assert base64.b64decode(attrs["knativeerrordata"], validate=True), attrs


WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}


def check_get(cmd: Command, tour: Tour) -> None:
    """`kbroker get` shows the objects the tour's text names, Ready."""
    done = run(cmd, tour)
    claim = re.search(
        r"The examples hold one Broker \(`([\w-]+)/([\w-]+)`\) and (\w+) Triggers: (.*?)\. See",
        cmd.prose,
    )
    assert claim, f"{cmd}: the text before it no longer names the examples' objects"
    namespace, broker, how_many, listed = claim.groups()
    triggers = re.findall(r"`([\w-]+)` \(", listed)
    assert len(triggers) == WORDS[how_many], (how_many, triggers)
    args = cmd.text.split()
    kind, name = args[2], args[3] if len(args) > 3 and not args[3].startswith("-") else None
    if "-o" in args:
        doc = yaml.safe_load(done.stdout)
        assert doc["metadata"]["name"] == name and name in triggers, doc
        ready = [c for c in doc["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", doc["status"]
        return
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    for wanted in [broker] if kind == "brokers" else triggers:
        row = next((r for r in rows if r[:2] == [namespace, wanted]), None)
        assert row is not None and "True" in row, f"{wanted} not shown Ready:\n{done.stdout}"


def check_get_pingsources(cmd: Command, tour: Tour) -> None:
    """The PingSource the prose names is shown Ready, sending where the examples say."""
    done = run(cmd, tour)
    claim = re.search(
        r"a PingSource, `([\w-]+)`, that sends .* subscriber's `(/\w+)`", cmd.prose, re.S
    )
    assert claim, f"{cmd}: the text before it no longer names the example PingSource"
    name, path = claim.groups()
    row = next((r.split() for r in done.stdout.splitlines()[1:] if f" {name} " in f" {r} "), None)
    assert row is not None and "True" in row, done.stdout
    assert any(cell.endswith(path) for cell in row), row


def check_make_run(cmd: Command, tour: Tour) -> None:
    """The `tour` fixture is `make run`'s recipe; the prose's URL and data folder are the ones
    that recipe and `kbroker run`'s defaults give."""
    recipe = run_recipe()
    assert recipe[recipe.index("--data") + 1] == ".run/data"
    assert "--port" not in recipe and "--host" not in recipe
    helped = subprocess.run([str(KBROKER), "run", "--help"], capture_output=True, text=True)
    assert "8080" in helped.stdout and "127.0.0.1" in helped.stdout, helped.stdout
    assert _ok(f"{tour.base}/readyz")


def check_subscriber(cmd: Command, tour: Tour) -> None:
    """The examples deliver to the address the note names, which is the script's default port;
    the `tour` fixture started this script (on a free port) and it listens."""
    assert cmd.note == f"listens on {README_SUBSCRIBER}", cmd.note
    uris = (ROOT / "examples/triggers.yaml").read_text()
    assert f"http://{README_SUBSCRIBER}/" in uris
    assert re.search(r"default=8099\b", (ROOT / "examples/subscriber.py").read_text())
    assert "listening" in tour.subscriber_out.read_text()


# --- what is run, and what is deliberately not ---------------------------------------------------

CLUSTER = (
    "needs a Kubernetes cluster that runs pods (and a container runtime to build the image); "
    "test/controller/test_kube_controller.py runs the controller, ingress and filter against a "
    "real kube-apiserver and the real kn"
)
KUBE_PROCESSES = (
    "needs the kube-apiserver and etcd that hack/kube.sh builds from source (minutes); "
    "test/controller/test_kube_controller.py starts these same processes"
)
KAFKA = (
    "starts Kafka JVMs (fetching the jars first); the kafka-marked tests start Kafka through the "
    "same hack/kafka.py"
)
NATS = (
    "needs a NATS server with JetStream (make nats); the nats-marked tests run kbroker --nats "
    "against the nats-server hack/nats.py builds"
)
BENCH = "reproduces the benchmark table (tens of minutes, and Kafka for its Kafka rows)"

Check = Callable[[Command, Tour], None]
RULES: list[tuple[str, str, Check | str]] = [
    ("README.md", r"make run\b", check_make_run),
    (
        "README.md",
        r"make test\b",
        "the whole CI run (ruff, mypy, every test with real Kafka and kube-apiserver): CI runs it",
    ),
    ("README.md", r"python3 examples/subscriber\.py$", check_subscriber),
    ("README.md", r"\.venv/bin/kbroker get pingsources", check_get_pingsources),
    ("README.md", r"\.venv/bin/kbroker get ", check_get),
    ("README.md", r"curl -i ", check_http),
    ("README.md", r"\.venv/bin/kbroker send ", check_send),
    ("README.md", r"echo '[^']*' > [\w.]+$", check_output),
    ("README.md", r"\.venv/bin/kbroker cesql ", check_output),
    ("README.md", r"(docker build|kubectl|kn) ", CLUSTER),
    ("README.md", r"\.venv/bin/kbroker bench targets ", BENCH),
    (
        "README.md",
        r"(pip install kbroker-[\d.]+-py3-none-any\.whl|kbroker run --config \"\$\(python -c)",
        "installs into the current environment; test/test_packaging.py builds the wheel, installs "
        "it into a fresh virtualenv and runs `kbroker run` on the packaged examples folder",
    ),
    (
        "docs/flows.md",
        r"\.venv/bin/kbroker (get|send) ",
        "a workflow needs its own step subscribers, which the tour does not run: "
        "test/e2e/test_flows.py sends to a Sequence's address and runs `kbroker get sequences`",
    ),
    ("docs/cesql.md", r"echo '[^']*' > [\w.]+$", check_console),
    ("docs/cesql.md", r"kbroker cesql ", check_console),
    ("docs/kafka.md", r"(make kafka|\.venv/bin/python hack/kafka\.py )", KAFKA),
    ("docs/channels.md", r"kbroker run --config examples --nats ", NATS),
    ("docs/kubernetes.md", r"(docker build|kubectl apply|kn) ", CLUSTER),
    (
        "docs/kubernetes.md",
        r"(bash hack/kube\.sh |K=|kubectl --kubeconfig |kbroker (ingress|filter|controller) )",
        KUBE_PROCESSES,
    ),
    (
        "docs/benchmarks.md",
        r"(BOOTSTRAP=\$\(|\.venv/bin/kbroker bench targets |\.venv/bin/python hack/kafka\.py stop)",
        BENCH,
    ),
    (
        "docs/benchmarks.md",
        r"(NATS=\$\(|RABBITMQ=\$\(|\.venv/bin/kbroker bench backends "
        r"|\.venv/bin/python hack/(nats|rabbitmq)\.py stop)",
        "the four-backend comparison (five minutes, three servers); "
        "test/kbroker/bench/test_backends.py runs it at tiny rates on the embedded log and NATS",
    ),
    (
        "docs/observability.md",
        r"OTEL_TRACES_EXPORTER=otlp ",
        "exports to an OTLP collector at "
        "collector:4318; test/e2e/test_tracing.py checks export against a real OTLP receiver",
    ),
    ("docs/observability.md", r"for i in ", "the tracing-overhead measurement: 12 bench runs"),
    (
        "docs/observability.md",
        r"kbroker (run|filter) .*--log-format json",
        "servers that run until stopped; test/e2e/test_logs.py starts `kbroker run --log-format "
        "json` and checks that every line it writes is one JSON object",
    ),
    (
        "docs/console.md",
        r"make run\b",
        "the README's `make run`, checked there; test/kbroker/test_ui_wiring.py checks the console "
        "`kbroker run` serves",
    ),
    (
        "docs/console.md",
        r"kubectl ",
        "cluster: test/kbroker/test_cmd_ui.py runs `kbroker ui` against a real kube-apiserver and "
        "checks config/optional/ui.yaml",
    ),
    ("docs/console.md", r"echo '[^']*' > [\w.]+$", check_output),
    ("docs/console.md", r"\.venv/bin/kbroker trigger test ", check_output),
    (
        "docs/console.md",
        r"\.venv/bin/kbroker tail ",
        "follows a broker until stopped: test/kbroker/test_cmd_tail.py runs it (with --count) "
        "against a real kbroker run on every backend",
    ),
    (
        "docs/console.md",
        r"\.venv/bin/kbroker deadletters ",
        "need a failing subscriber and a dead-letter Broker: test/e2e/test_deadletters.py runs "
        "`list` and `redrive` against a real kbroker run and checks the subscriber gets it once",
    ),
    (
        "docs/operations.md",
        r"kbroker log (check|salvage) ",
        "need a damaged log: test/faults/test_embedded_log_faults.py damages real logs and runs "
        "both, test/kbroker/test_cmd_log.py checks their output and exit codes",
    ),
]


SENDERS: tuple[Check, ...] = (check_http, check_send)


def rule_of(cmd: Command) -> tuple[str, str, Check | str] | None:
    return next((r for r in RULES if r[0] == cmd.page and re.match(r[1], cmd.text)), None)


COMMANDS = all_commands()


@pytest.mark.parametrize("cmd", COMMANDS, ids=str)
def test_command_does_what_the_text_says(cmd: Command, request: pytest.FixtureRequest) -> None:
    rule = rule_of(cmd)
    assert rule is not None, f"{cmd}: {cmd.text!r} is neither run nor skipped: add it to RULES"
    if isinstance(rule[2], str):
        pytest.skip(f"not run here: {rule[2]}")
    rule[2](cmd, request.getfixturevalue("tour"))


def test_every_claim_about_events_is_checked() -> None:
    """A reworded sentence must not turn its check off silently."""
    sends = [c for c in COMMANDS if rule_of(c) in [r for r in RULES if r[2] in SENDERS]]
    assert [c.pattern for c in CLAIMS if not any(c.search(s.prose) for s in sends)] == []


def test_every_rule_still_names_a_command() -> None:
    unused = [r[:2] for r in RULES if not any(rule_of(c) == r for c in COMMANDS)]
    assert unused == []


@pytest.mark.parametrize("page", PAGES)
def test_command_blocks_say_they_are_shell(page: str) -> None:
    assert untagged_commands(page, (ROOT / page).read_text()) == []
