"""Commands read out of Markdown: the ```sh and ```console blocks of the README and docs/.

Why a reader of our own: the docs tests check every command the docs show, so they must see them
exactly as a reader does: continuation lines joined, a shell loop kept whole, an inline `# note`
apart from the command, `# ...` lines right under a command as its documented output, and in a
console block the lines after `$ cmd` as its output. It does not run anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

SHELL = {"sh", "bash", "shell", "console"}
# A line of an untagged block that starts like a command: such a block must say it is shell.
LOOKS_LIKE_COMMAND = re.compile(
    r"^\s*(\$ |(\.venv/bin/)?(kbroker|curl|make|kubectl|kn|docker|bash|python3?|tilt)\s+[-\w.'\"$])"
)


@dataclass
class Command:
    page: str
    line: int
    text: str  # continuation lines joined; an inline `# note` removed
    note: str = ""  # the inline comment, if any
    expected: tuple[str, ...] = ()  # `# ...` lines under it (sh) or its output lines (console)
    console: bool = False
    prose: str = ""  # the paragraph before the block
    before: tuple[str, ...] = ()  # earlier commands of the same block

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def split_comment(line: str) -> tuple[str, str]:
    """`cmd args  # note` -> (`cmd args`, `note`), ignoring `#` inside quotes or words."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def _depth(text: str) -> int:
    words = re.findall(r"(?<![\w-])(do|done|then|fi)(?![\w-])", split_comment(text)[0])
    return sum(1 if w in ("do", "then") else -1 for w in words)


def blocks(text: str) -> Iterator[tuple[str, int, list[str], str]]:
    """(language, first line number, lines, the paragraph before) of every fenced block."""
    lines = text.splitlines()
    i, paragraph, last = 0, list[str](), list[str]()
    while i < len(lines):
        m = re.match(r"^ {0,3}```\s*(\S*)", lines[i])
        if not m:
            if lines[i].strip():
                paragraph.append(lines[i].strip())
            elif paragraph:
                paragraph, last = [], paragraph
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not re.match(r"^ {0,3}```\s*$", lines[end]):
            end += 1
        yield m.group(1).lower(), i + 2, lines[i + 1 : end], " ".join(paragraph or last)
        i, paragraph, last = end + 1, [], []


def commands_in(page: str, text: str) -> list[Command]:
    found: list[Command] = []
    for lang, first, body, prose in blocks(text):
        if lang not in SHELL:
            continue
        console, block, last, i = lang == "console", list[str](), None, 0
        while i < len(body):
            line, number = body[i], first + i
            i += 1
            if console and not line.startswith("$ "):
                if last is not None and line.strip():
                    last.expected += (line.rstrip(),)
                elif not line.strip():
                    last = None
                continue
            raw = line[2:] if console else line.strip()
            if not raw:
                last = None
                continue
            if raw.startswith("#"):
                if last is not None:
                    last.expected += (raw[1:].strip(),)
                continue
            while (raw.endswith("\\") or _depth(raw) > 0) and i < len(body):
                raw = raw[:-1].rstrip() + " " if raw.endswith("\\") else raw + "\n"
                raw += body[i].strip()
                i += 1
            cmd, note = split_comment(raw)
            last = Command(page, number, cmd, note, (), console, prose, tuple(block))
            block.append(cmd)
            found.append(last)
    return found


def untagged_commands(page: str, text: str) -> list[str]:
    return [
        f"{page}:{first + n}: {line.strip()}"
        for lang, first, body, _ in blocks(text)
        if not lang
        for n, line in enumerate(body)
        if LOOKS_LIKE_COMMAND.match(line)
    ]
