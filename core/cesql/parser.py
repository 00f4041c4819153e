"""CESQL parser: precedence climbing over the token list, producing the typed tree in `ast`.

Precedence, highest first, as in the CESQL v1 grammar (and so in the Go SDK Knative uses):
function call > NOT > unary minus > LIKE > EXISTS > IN > `* / %` > `+ -` > comparisons >
AND/OR/XOR. Two consequences users trip over, kept on purpose for Knative parity:

* AND, OR and XOR share one level and group right to left: `a AND b OR c` is `a AND (b OR c)`.
  `parse_with_warnings` flags such mixes so the CLI and Trigger status can say so.
* Prefix NOT takes only the next operand: `NOT a = b` is `(NOT a) = b`; also flagged.

Integer literals carry their sign when it is glued to the digits in operand position (`-5`,
`4 + -1`, and `-2147483648`, which would overflow as minus-of-literal). Unlike the Go SDK,
`5-3` is accepted as a subtraction rather than rejected.

Bounded by construction: text longer than `max_length` and trees deeper than `max_depth` are
ParseErrors, so hostile input can neither exhaust the Python stack nor make later passes slow.
"""

from __future__ import annotations

from typing import Final

from kbroker.core.cesql import ast
from kbroker.core.cesql.errors import ParseError
from kbroker.core.cesql.lexer import Token, tokenize

DEPTH_CEILING: Final = 100  # above this, recursive passes could near Python's stack limit
KEYWORDS: Final = frozenset({"AND", "OR", "XOR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "FALSE"})
_LOGIC, _COMPARE, _ADD, _MUL, _IN, _LIKE = 1, 2, 3, 4, 5, 7
_BINARY_LEVEL: Final = {
    **dict.fromkeys(("=", "!=", "<>", "<", "<=", ">", ">="), _COMPARE),
    "+": _ADD,
    "-": _ADD,
    "*": _MUL,
    "/": _MUL,
    "%": _MUL,
}
_INT32_MAX: Final = 2**31 - 1
MIXED_LOGIC_WARNING: Final = (
    "mixes AND/OR/XOR without parentheses; grouped right to left as in Knative: a AND (b OR c)"
)
BARE_NOT_WARNING: Final = (
    "NOT applies to the next operand only: NOT a = b means (NOT a) = b; "
    "write NOT (a = b), a != b, a NOT LIKE p or a NOT IN (...)"
)


def parse(expression: str, *, max_length: int = 4096, max_depth: int = 64) -> ast.Expr:
    """The tree of `expression`; ParseError when it is not CESQL or exceeds the bounds."""
    return parse_with_warnings(expression, max_length=max_length, max_depth=max_depth)[0]


def parse_with_warnings(
    expression: str, *, max_length: int = 4096, max_depth: int = 64
) -> tuple[ast.Expr, list[str]]:
    if not 1 <= max_depth <= DEPTH_CEILING:
        raise ValueError(f"max_depth must be within 1..{DEPTH_CEILING}")
    if len(expression) > max_length:
        raise ParseError(
            f"an expression of at most {max_length} characters", max_length, expression
        )
    parser = _Parser(expression, tokenize(expression), max_depth)
    return parser.parse_all(), parser.warnings


class _Parser:
    def __init__(self, expression: str, tokens: list[Token], max_depth: int) -> None:
        self.text = expression
        self.tokens = tokens
        self.pos = 0
        self.max_depth = max_depth
        self.nesting = 0  # open parentheses, argument/IN lists and prefix operators
        self.depths: dict[int, int] = {}  # id(node) -> height of its subtree
        self.bare_nots: set[int] = set()  # ids of NOT nodes written without parentheses
        self.warnings: list[str] = []

    # -- helpers -----------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def fail(self, expected: str, tok: Token | None = None) -> ParseError:
        tok = tok or self.peek()
        return ParseError(expected, tok.start, self.text, tok.describe())

    def expect(self, kind: str, expected: str) -> Token:
        if self.peek().kind != kind:
            raise self.fail(expected)
        return self.advance()

    def node(self, made: ast.Expr, children: tuple[ast.Expr, ...], at: Token) -> ast.Expr:
        """Record `made`'s height and refuse trees deeper than max_depth."""
        height = 1 + max((self.depths.get(id(c), 1) for c in children), default=0)
        if height > self.max_depth:
            raise ParseError(
                f"an expression nested at most {self.max_depth} levels deep", at.start, self.text
            )
        self.depths[id(made)] = height
        return made

    def enter(self) -> None:
        """Count one more level of recursion (each costs a bounded number of Python frames)."""
        self.nesting += 1
        if self.nesting > self.max_depth:
            tok = self.peek()
            raise ParseError(
                f"an expression nested at most {self.max_depth} levels deep", tok.start, self.text
            )

    @staticmethod
    def word(tok: Token) -> str:
        return tok.text.upper() if tok.kind == "word" else ""

    # -- grammar -----------------------------------------------------------------------------
    def parse_all(self) -> ast.Expr:
        expr = self.parse_expr(_LOGIC)
        if self.peek().kind != "end":
            raise self.fail("an operator or the end of the expression")
        return expr

    def parse_expr(self, min_level: int) -> ast.Expr:
        left = self.parse_unary()
        while True:
            tok = self.peek()
            kw = self.word(tok)
            if kw == "NOT" and self.word(self.peek(1)) in ("LIKE", "IN"):
                kw = self.word(self.peek(1))
            elif kw == "NOT":
                raise self.fail("LIKE or IN after NOT", self.peek(1))
            if kw == "LIKE" and min_level <= _LIKE:
                left = self.parse_like(left)
            elif kw == "IN" and min_level <= _IN:
                left = self.parse_in(left)
            elif kw in ("AND", "OR", "XOR") and min_level <= _LOGIC:
                left = self.parse_logic_chain(left)
            elif tok.kind == "op" and min_level <= _BINARY_LEVEL[tok.text]:
                self.check_bare_not(left)
                self.advance()
                right = self.parse_expr(_BINARY_LEVEL[tok.text] + 1)
                made: ast.Expr
                if _BINARY_LEVEL[tok.text] == _COMPARE:
                    made = ast.Comparison(tok.text, left, right)  # type: ignore[arg-type]
                else:
                    made = ast.Arithmetic(tok.text, left, right)  # type: ignore[arg-type]
                left = self.node(made, (left, right), tok)
            else:
                break
        return left

    def check_bare_not(self, left: ast.Expr) -> None:
        if id(left) in self.bare_nots and BARE_NOT_WARNING not in self.warnings:
            self.warnings.append(BARE_NOT_WARNING)

    def parse_like(self, left: ast.Expr) -> ast.Expr:
        self.check_bare_not(left)
        negated = self.word(self.peek()) == "NOT"
        if negated:
            self.advance()
        op = self.advance()  # LIKE
        pattern = self.expect("string", "a string literal pattern after LIKE")
        return self.node(ast.Like(left, pattern.text, negated), (left,), op)

    def parse_in(self, left: ast.Expr) -> ast.Expr:
        self.check_bare_not(left)
        negated = self.word(self.peek()) == "NOT"
        if negated:
            self.advance()
        op = self.advance()  # IN
        self.expect("(", "'(' opening the set after IN")
        items = self.parse_list("an expression in the IN set")
        if not items:
            raise self.fail("at least one expression in the IN set", self.tokens[self.pos - 1])
        return self.node(ast.In(left, tuple(items), negated), (left, *items), op)

    def parse_list(self, what: str) -> list[ast.Expr]:
        """Comma-separated expressions up to and including ')'; the '(' is already consumed."""
        items: list[ast.Expr] = []
        self.enter()
        if self.peek().kind == ")":
            self.advance()
            self.nesting -= 1
            return items
        while True:
            if self.peek().kind in (")", ",", "end"):
                raise self.fail(what)
            items.append(self.parse_expr(_LOGIC))
            sep = self.peek()
            if sep.kind == ")":
                self.advance()
                self.nesting -= 1
                return items
            if sep.kind != ",":
                raise self.fail("',' or ')'")
            self.advance()

    def parse_logic_chain(self, first: ast.Expr) -> ast.Expr:
        operands, ops = [first], []
        while (kw := self.word(self.peek())) in ("AND", "OR", "XOR"):
            ops.append((kw, self.advance()))
            operands.append(self.parse_expr(_COMPARE))
        if len({kw for kw, _ in ops}) > 1 and MIXED_LOGIC_WARNING not in self.warnings:
            self.warnings.append(MIXED_LOGIC_WARNING)
        # Right to left: runs of one operator become one n-ary node.
        current: ast.Expr = operands[-1]
        run: list[ast.Expr] = [current]
        for index in range(len(ops) - 1, -1, -1):
            kw, tok = ops[index]
            run.insert(0, operands[index])
            if index == 0 or ops[index - 1][0] != kw:
                made = ast.Logical(kw, tuple(run))  # type: ignore[arg-type]
                current = self.node(made, tuple(run), tok)
                run = [current]
        return current

    def parse_unary(self) -> ast.Expr:
        tok = self.peek()
        kw = self.word(tok)
        result: ast.Expr
        if kw == "NOT":
            self.advance()
            self.enter()
            operand = self.parse_unary()
            self.nesting -= 1
            result = self.node(ast.Not(operand), (operand,), tok)
            self.bare_nots.add(id(result))
        elif tok.kind == "op" and tok.text in "+-" and self.glued_int(tok):
            self.advance()
            digits = self.advance()
            result = self.integer(digits, negative=tok.text == "-", start=tok)
        elif tok.kind == "op" and tok.text == "-":
            self.advance()
            self.enter()
            operand = self.parse_unary()
            self.nesting -= 1
            result = self.node(ast.Negate(operand), (operand,), tok)
        else:
            result = self.parse_primary()
        return result

    def glued_int(self, sign: Token) -> bool:
        nxt = self.peek(1)
        return nxt.kind == "int" and nxt.start == sign.end

    def integer(self, digits: Token, *, negative: bool, start: Token) -> ast.Expr:
        significant = digits.text.lstrip("0") or "0"
        value = int(significant) if len(significant) <= 11 else _INT32_MAX * 2  # no huge int()
        value = -value if negative else value
        if not -_INT32_MAX - 1 <= value <= _INT32_MAX:
            raise ParseError(
                "an integer within -2147483648..2147483647", start.start, self.text, digits.text
            )
        return ast.Constant(value)

    def parse_primary(self) -> ast.Expr:
        tok = self.peek()
        kw = self.word(tok)
        if tok.kind == "int":
            return self.integer(self.advance(), negative=False, start=tok)
        if tok.kind == "string":
            return ast.Constant(self.advance().text)
        if tok.kind == "(":
            self.advance()
            self.enter()
            inner = self.parse_expr(_LOGIC)
            self.nesting -= 1
            self.expect(")", "')'")
            self.bare_nots.discard(id(inner))
            return inner
        if kw in ("TRUE", "FALSE"):
            self.advance()
            return ast.Constant(kw == "TRUE")
        if kw == "EXISTS":
            self.advance()
            return ast.Exists(self.attribute_name(self.peek(), "an attribute name after EXISTS"))
        if tok.kind == "word" and kw not in KEYWORDS:
            if self.peek(1).kind == "(":
                return self.parse_call()
            return ast.Attribute(self.attribute_name(tok, "an attribute name"))
        raise self.fail("an expression")

    def attribute_name(self, tok: Token, expected: str) -> str:
        if tok.kind != "word" or self.word(tok) in KEYWORDS or "_" in tok.text:
            raise self.fail(expected + " (letters and digits, not a keyword)", tok)
        self.advance()
        return tok.text.lower()

    def parse_call(self) -> ast.Expr:
        name = self.advance()
        if not (name.text[0].isalpha() and name.text.replace("_", "").isalpha()):
            raise self.fail("a function name (letters and '_', starting with a letter)", name)
        self.advance()  # '('
        args = self.parse_list("a function argument")
        return self.node(ast.Call(name.text.upper(), tuple(args)), tuple(args), name)
