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


def shape(pattern: str) -> tuple[str, str] | None:
    """("equals" | "prefix" | "suffix" | "contains", text) when the pattern is one of those."""
    pieces = split(pattern)
    if any(None in piece for piece in pieces):
        return None
    texts = ["".join(piece) for piece in pieces]  # type: ignore[arg-type]
    if len(texts) == 1:
        return "equals", texts[0]
    if len(texts) == 2 and not texts[1]:
        return "prefix", texts[0]
    if len(texts) == 2 and not texts[0]:
        return "suffix", texts[1]
    if len(texts) == 3 and not texts[0] and not texts[2]:
        return "contains", texts[1]
    return None


def compile_like(pattern: str) -> Matcher:
    known = shape(pattern)
    if known is not None:
        kind, text = known
        if kind == "equals":
            return lambda value: value == text
        if kind == "prefix":
            return lambda value: value.startswith(text)
        if kind == "suffix":
            return lambda value: value.endswith(text)
        return lambda value: text in value
    return _general(split(pattern))


def _regex(piece: Piece) -> re.Pattern[str]:
    """A fixed-width regex for one piece: literals escaped, `_` as any single character."""
    return re.compile("".join("." if c is None else re.escape(c) for c in piece), re.DOTALL)


def _at(piece: Piece) -> Callable[[str, int], bool]:
    """Does `piece` match `value` at `pos`? (str.startswith for pieces without `_`)."""
    if None not in piece:
        text = "".join(piece)  # type: ignore[arg-type]
        return lambda value, pos: value.startswith(text, pos)
    regex = _regex(piece)
    return lambda value, pos: regex.match(value, pos) is not None


def _find(piece: Piece) -> Callable[[str, int, int], int]:
    """Leftmost start of `piece` within value[pos:end], or -1 (str.find without `_`)."""
    if None not in piece:
        text = "".join(piece)  # type: ignore[arg-type]
        return lambda value, pos, end: value.find(text, pos, end)
    regex = _regex(piece)

    def search(value: str, pos: int, end: int) -> int:
        found = regex.search(value, pos, end)
        return -1 if found is None else found.start()

    return search


def _literal_pieces(texts: list[str]) -> Matcher:
    """Several `%`, no `_`: str methods only."""
    head, tail, middles = texts[0], texts[-1], [t for t in texts[1:-1] if t]
    head_len, tail_len = len(head), len(tail)

    def match(value: str) -> bool:
        end = len(value) - tail_len
        if end < head_len or not value.startswith(head) or not value.endswith(tail):
            return False
        pos = head_len
        for text in middles:
            start = value.find(text, pos, end)
            if start < 0:
                return False
            pos = start + len(text)
        return True

    return match


def _general(pieces: list[Piece]) -> Matcher:
    if len(pieces) == 1:
        whole, width = _at(pieces[0]), len(pieces[0])
        return lambda value: len(value) == width and whole(value, 0)
    if all(None not in piece for piece in pieces):
        return _literal_pieces(["".join(piece) for piece in pieces])  # type: ignore[arg-type]
    head, tail = _at(pieces[0]), _at(pieces[-1])
    head_len, tail_len = len(pieces[0]), len(pieces[-1])
    middles = [(_find(p), len(p)) for p in pieces[1:-1] if p]

    def match(value: str) -> bool:
        end = len(value) - tail_len
        if end < head_len or not head(value, 0) or not tail(value, end):
            return False
        pos = head_len
        for find, width in middles:
            start = find(value, pos, end)
            if start < 0:
                return False
            pos = start + width
        return True

    return match
