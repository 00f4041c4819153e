"""The Markdown command reader: what counts as a command, its note, its output and its prose."""

from __future__ import annotations

import pytest
from docs.markdown_commands import commands_in, untagged_commands


@pytest.mark.parametrize(
    ("markdown", "want"),
    [
        (
            "Send:\n\n```sh\ncurl -i http://x \\\n  -d '{}'\n# HTTP/1.1 202 Accepted\n```\n",
            [("curl -i http://x -d '{}'", "", ("HTTP/1.1 202 Accepted",), "Send:")],
        ),
        (
            "```sh\n# a note, not output\nmake run   # starts it\n\nmake test\n```\n",
            [("make run", "starts it", (), ""), ("make test", "", (), "")],
        ),
        (
            '```console\n$ kbroker cesql "a # b"\nvalid\n\n$ echo x\n```\n',
            [('kbroker cesql "a # b"', "", ("valid",), ""), ("echo x", "", (), "")],
        ),
        (
            "```sh\nfor i in 1 2; do\n  kbroker bench x\ndone\n```\n",
            [("for i in 1 2; do\nkbroker bench x\ndone", "", (), "")],
        ),
        (
            "Try:\n\n```console\n$ kbroker cesql x ; echo $?\ninvalid\n  x\n2\n```\n",
            [("kbroker cesql x ; echo $?", "", ("invalid", "  x", "2"), "Try:")],
        ),
        (
            "```sh\ncurl 'http://x/#not-a-note' # a note\n```\n",
            [("curl 'http://x/#not-a-note'", "a note", (), "")],
        ),
        ("```text\nkbroker run\n```\n```yaml\nkind: Broker\n```\n", []),
    ],
)
def test_commands_are_read_from_markdown(markdown: str, want: list[tuple[object, ...]]) -> None:
    got = [(c.text, c.note, c.expected, c.prose) for c in commands_in("X.md", markdown)]
    assert got == want


def test_an_untagged_block_with_a_command_is_found() -> None:
    text = "```\nproducer --> ingress\n```\n\n```\n.venv/bin/kbroker get brokers\n```\n"
    assert untagged_commands("X.md", text) == ["X.md:6: .venv/bin/kbroker get brokers"]


def test_a_command_knows_its_line_and_the_commands_before_it() -> None:
    text = "# Page\n\n```sh\necho a > f\n\ncat f\n```\n"
    got = [(str(c), c.before) for c in commands_in("X.md", text)]
    assert got == [("X.md:4", ()), ("X.md:6", ("echo a > f",))]
