"""CESQL tokenizer: turns the expression text into positioned tokens, in one linear pass.

Why hand-written: the token rules are few and the positions must be exact for error carets.
Context-dependent decisions (is `-5` a literal or a minus? is a word a function name?) belong to
the parser, which knows whether it expects an operand; the lexer only records adjacency.

String literals: `'...'` or `"..."`. A backslash always pairs with the next character; `\\'` in a
single-quoted string (`\\"` in a double-quoted one) yields the quote, every other pair is kept
verbatim (so `'ab\\c'` keeps its backslash; LIKE gives `\\%` and `\\_` their meaning). This is how
the Go SDK, and so Knative, reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from kbroker.core.cesql.errors import ParseError

TokenKind = Literal["int", "string", "word", "op", "(", ")", ",", "end"]
_WHITESPACE: Final = frozenset(" \t\r\n")
_WORD_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_TWO_CHAR_OPS: Final = ("!=", "<>", "<=", ">=")
_ONE_CHAR_OPS: Final = frozenset("=<>+-*/%")


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str  # source text; for strings, the decoded value
    start: int
    end: int

    def describe(self) -> str:
        if self.kind == "end":
            return "end of expression"
        if self.kind == "string":
            return f"string {_quote(self.text)}"
        return repr(self.text)


def _quote(value: str) -> str:
    return "'" + (value if len(value) <= 20 else value[:20] + "...") + "'"


def tokenize(expression: str) -> list[Token]:
    """All tokens of `expression`, ending with an `end` token; ParseError on a bad character."""
    tokens: list[Token] = []
    i, n = 0, len(expression)
    while i < n:
        ch = expression[i]
        if ch in _WHITESPACE:
            i += 1
        elif ch in _WORD_CHARS:
            j = i + 1
            while j < n and expression[j] in _WORD_CHARS:
                j += 1
            word = expression[i:j]
            tokens.append(Token("int" if word.isdigit() else "word", word, i, j))
            i = j
        elif ch == "'" or ch == '"':
            value, j = _string(expression, i)
            tokens.append(Token("string", value, i, j))
            i = j
        elif ch in "(),":
            tokens.append(Token(ch, ch, i, i + 1))  # type: ignore[arg-type]
            i += 1
        elif expression.startswith(_TWO_CHAR_OPS, i):
            tokens.append(Token("op", expression[i : i + 2], i, i + 2))
            i += 2
        elif ch in _ONE_CHAR_OPS:
            tokens.append(Token("op", ch, i, i + 1))
            i += 1
        else:
            raise ParseError("an operator, a literal, a name or '('", i, expression, repr(ch))
    tokens.append(Token("end", "", n, n))
    return tokens


def _string(expression: str, start: int) -> tuple[str, int]:
    """Decode the string literal opening at `start`; returns (value, index after the quote)."""
    quote = expression[start]
    parts: list[str] = []
    i, n = start + 1, len(expression)
    while i < n:
        ch = expression[i]
        if ch == quote:
            return "".join(parts), i + 1
        if ch == "\\" and i + 1 < n:
            nxt = expression[i + 1]
            parts.append(quote if nxt == quote else ch + nxt)
            i += 2
        else:
            parts.append(ch)
            i += 1
    raise ParseError(f"a closing {quote} for the string opened at {start}", n, expression)
