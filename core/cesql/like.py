"""LIKE patterns compiled once into a matcher `str -> bool` (cesql/spec.md §3.4.3).

`%` matches any run of characters (none included), `_` exactly one character; `\\%` and `\\_`
match the literal character; any other backslash matches itself. Matching is case-sensitive,
whole-value and per Unicode code point.

Why not a regular expression: `.*` runs backtrack, so a pattern like `%a%a%a%a%b` against a long
value takes polynomial time, and a Trigger author could stall a dispatcher with it. Splitting at
`%` and placing each fixed-width piece at its leftmost match is linear in practice and needs no
backtracking (leftmost placement is always safe when pieces are separated by `%`). Common shapes
(no wildcard, prefix%, %suffix, %infix%) become single `str` method calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

Matcher = Callable[[str], bool]
ANY_ONE: Final = None  # a `_` in a decoded piece
Piece = tuple[str | None, ...]


def split(pattern: str) -> list[Piece]:
    """The pattern's pieces between unescaped `%`, each a tuple of chars and ANY_ONE."""
    pieces: list[Piece] = []
    current: list[str | None] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n and pattern[i + 1] in "%_":
            current.append(pattern[i + 1])
            i += 2
            continue
        if ch == "%":
            pieces.append(tuple(current))
            current = []
        else:
            current.append(ANY_ONE if ch == "_" else ch)
        i += 1
    pieces.append(tuple(current))
    return pieces


def compile_like(pattern: str) -> Matcher:
    pieces = split(pattern)
    literal = [None not in piece for piece in pieces]
    texts = ["".join(c for c in piece if c is not None) for piece in pieces]
    if len(pieces) == 1 and literal[0]:
        return texts[0].__eq__
    if len(pieces) == 2 and all(literal):
        head, tail = texts
        if not tail:
            return lambda value: value.startswith(head)
        if not head:
            return lambda value: value.endswith(tail)
        size = len(head) + len(tail)
        return lambda value: len(value) >= size and value.startswith(head) and value.endswith(tail)
    if len(pieces) == 3 and all(literal) and not texts[0] and not texts[2]:
        middle = texts[1]
        return lambda value: middle in value
    return _general(pieces)


def _regex(piece: Piece) -> re.Pattern[str]:
    """A fixed-width regex for one piece: literals escaped, `_` as any single character."""
    return re.compile("".join("." if c is None else re.escape(c) for c in piece), re.DOTALL)


def _general(pieces: list[Piece]) -> Matcher:
    if len(pieces) == 1:
        whole = _regex(pieces[0])
        return lambda value: whole.fullmatch(value) is not None
    head, tail = _regex(pieces[0]), _regex(pieces[-1])
    head_len, tail_len = len(pieces[0]), len(pieces[-1])
    middles = [(_regex(p), len(p)) for p in pieces[1:-1] if p]

    def match(value: str) -> bool:
        end = len(value) - tail_len
        if end < head_len or head.match(value) is None or tail.match(value, end) is None:
            return False
        pos = head_len
        for regex, width in middles:
            found = regex.search(value, pos, end)
            if found is None:
                return False
            pos = found.start() + width
        return True

    return match
