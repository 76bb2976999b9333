"""CEXL text -> syntax tree, as Istio 1.3 reads it (mixer/pkg/lang/ast/expr.go).

Mixer hands the text to Go's ``parser.ParseExpr`` and converts the Go syntax tree. So this
module scans and parses the Go expression grammar (Go 1.12's: tokens, automatic semicolons,
comments, precedence, literals) and converts on the way: ``a.b.c`` is the attribute named
``"a.b.c"``, operators become functions named after Go's tokens (``==`` is ``EQ``), ``m[k]`` is
``INDEX``, ``x.f(y)`` an instance call with target ``x``, and ``true``/``false`` in any case are
BOOL constants. Everything else Go would parse (composite literals, slices, ``*x``, type
assertions, ...) is "unexpected expression". Every failure is a :class:`ParseError` with the
line and column; nesting deeper than :data:`MAX_DEPTH` is one too (Go has no limit, but a
Python stack does).
"""

from __future__ import annotations

from collections.abc import Callable

from istio_sdk.api.istio.policy.v1beta1 import ValueType
from istio_sdk.config._go import parse_duration, parse_int
from istio_sdk.mixer.errors import ParseError

__all__ = ["MAX_DEPTH", "Const", "Fn", "Node", "Var", "parse"]

MAX_DEPTH = 100

KEYWORDS = frozenset(
    [
        "break",
        "case",
        "chan",
        "const",
        "continue",
        "default",
        "defer",
        "else",
        "fallthrough",
        "for",
        "func",
        "go",
        "goto",
        "if",
        "import",
        "interface",
        "map",
        "package",
        "range",
        "return",
        "select",
        "struct",
        "switch",
        "type",
        "var",
    ]
)
# the tokens after which Go's scanner turns a newline (or the end) into a semicolon
_SEMI_AFTER = frozenset({"IDENT", "INT", "FLOAT", "IMAG", "CHAR", "STRING", ")", "]", "}"})
_OPERATORS = sorted(
    [
        "<<=",
        ">>=",
        "&^=",
        "...",
        "&&",
        "||",
        "<-",
        "++",
        "--",
        "==",
        "!=",
        "<=",
        ">=",
        ":=",
        "<<",
        ">>",
        "&^",
        "+=",
        "-=",
        "*=",
        "/=",
        "%=",
        "&=",
        "|=",
        "^=",
        "+",
        "-",
        "*",
        "/",
        "%",
        "&",
        "|",
        "^",
        "<",
        ">",
        "=",
        "!",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ";",
        ".",
        ":",
    ],
    key=len,
    reverse=True,
)
_BINARY_PRECEDENCE = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    "<": 3,
    "<=": 3,
    ">": 3,
    ">=": 3,
    "+": 4,
    "-": 4,
    "|": 4,
    "^": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "<<": 5,
    ">>": 5,
    "&": 5,
    "&^": 5,
}
# Mixer's token -> function name table; a token missing here gives the function name ""
FUNCTION_NAMES = {
    "+": "ADD",
    "-": "SUB",
    "*": "MUL",
    "/": "QUO",
    "%": "REM",
    "&": "AND",
    "|": "OR",
    "^": "XOR",
    "&&": "LAND",
    "||": "LOR",
    "==": "EQ",
    "<": "LT",
    ">": "GT",
    "!": "NOT",
    "!=": "NEQ",
    "<=": "LEQ",
    ">=": "GEQ",
}
_UNARY = frozenset({"+", "-", "!", "^", "&", "<-"})


# --- the tree -----------------------------------------------------------------------------


class Node:
    """A CEXL expression: a constant, an attribute or a function call."""

    __slots__ = ("depth",)
    depth: int


class Const(Node):
    """A literal; ``text`` is how Mixer prints it (the source text, ``true``/``false`` lowered)."""

    __slots__ = ("text", "type", "value")

    def __init__(self, text: str, value_type: ValueType, value: object) -> None:
        self.text = text
        self.type = value_type
        self.value = value
        self.depth = 1

    def __str__(self) -> str:
        return self.text


class Var(Node):
    """An attribute reference (the namespace is flat: ``a.b.c`` is one name)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name
        self.depth = 1

    def __str__(self) -> str:
        return "$" + self.name


class Fn(Node):
    """A function (an operator, a call, or an instance method with ``target``)."""

    __slots__ = ("args", "name", "target")

    def __init__(self, name: str, args: list[Node], target: Node | None = None) -> None:
        self.name = name
        self.args = args
        self.target = target
        self.depth = 1 + max([a.depth for a in args] + [target.depth if target else 0])

    def __str__(self) -> str:
        head = f"{self.target}:" if self.target is not None else ""
        return f"{head}{self.name}({', '.join(map(str, self.args))})"


# --- scanning -----------------------------------------------------------------------------


class _Token:
    __slots__ = ("kind", "offset", "text")

    def __init__(self, kind: str, text: str, offset: int) -> None:
        self.kind = kind  # IDENT INT FLOAT IMAG CHAR STRING KEYWORD ; EOF or the operator
        self.text = text
        self.offset = offset


class _Scanner:
    def __init__(self, source: str, fail: Callable[[int, str], ParseError]) -> None:
        self.src = source
        self.fail = fail
        self.pos = 0
        self.last_kind = ""

    def tokens(self) -> list[_Token]:
        out: list[_Token] = []
        while True:
            token = self._next()
            out.append(token)
            self.last_kind = token.kind if token.kind != "KEYWORD" else token.text
            if token.kind == "EOF":
                return out

    def _newline_semicolon(self, offset: int) -> _Token | None:
        if self.last_kind in _SEMI_AFTER:
            return _Token(";", "\n", offset)
        return None

    def _next(self) -> _Token:
        src = self.src
        while True:
            while self.pos < len(src) and src[self.pos] in " \t\r":
                self.pos += 1
            if self.pos >= len(src):
                semi = self._newline_semicolon(self.pos)
                return semi or _Token("EOF", "", self.pos)
            char = src[self.pos]
            start = self.pos
            if char == "\n":
                self.pos += 1
                semi = self._newline_semicolon(start)
                if semi is not None:
                    return semi
                continue
            if src.startswith("//", start):
                end = src.find("\n", start)
                self.pos = len(src) if end < 0 else end
                continue
            if src.startswith("/*", start):
                end = src.find("*/", start + 2)
                if end < 0:
                    raise self.fail(start, "comment not terminated")
                self.pos = end + 2
                if "\n" in src[start:end]:
                    semi = self._newline_semicolon(start)
                    if semi is not None:
                        return semi
                continue
            break
        if char.isalpha() or char == "_":
            end = start + 1
            while end < len(src) and (
                src[end].isalpha() or src[end].isdecimal() or src[end] == "_"
            ):
                end += 1
            self.pos = end
            word = src[start:end]
            return _Token("KEYWORD" if word in KEYWORDS else "IDENT", word, start)
        if "0" <= char <= "9" or (char == "." and src[start + 1 : start + 2].isdigit()):
            return self._number(start)
        if char == '"':
            return self._quoted(start, '"', "STRING", "string literal not terminated")
        if char == "'":
            return self._quoted(start, "'", "CHAR", "rune literal not terminated")
        if char == "`":
            end = src.find("`", start + 1)
            if end < 0:
                raise self.fail(start, "raw string literal not terminated")
            self.pos = end + 1
            return _Token("STRING", src[start : end + 1], start)
        for op in _OPERATORS:
            if src.startswith(op, start):
                self.pos = start + len(op)
                return _Token(op, op, start)
        raise self.fail(start, f"illegal character U+{ord(char):04X} {char!r}")

    def _digits(self, pos: int, allowed: str) -> int:
        while pos < len(self.src) and self.src[pos] in allowed:
            pos += 1
        return pos

    def _number(self, start: int) -> _Token:
        src = self.src
        decimal = "0123456789"
        pos = start
        kind = "INT"
        if src[pos] == "0" and src[pos + 1 : pos + 2] in ("x", "X"):
            end = self._digits(pos + 2, decimal + "abcdefABCDEF")
            if end == pos + 2:
                raise self.fail(start, "illegal hexadecimal number")
            self.pos = end
            return _Token("INT", src[start:end], start)
        pos = self._digits(pos, decimal)
        octal = src[start] == "0" and pos - start > 1
        if pos < len(src) and src[pos] == ".":
            kind = "FLOAT"
            pos = self._digits(pos + 1, decimal)
        if pos < len(src) and src[pos] in "eE":
            kind = "FLOAT"
            pos += 1
            if pos < len(src) and src[pos] in "+-":
                pos += 1
            end = self._digits(pos, decimal)
            if end == pos:
                raise self.fail(start, "illegal floating-point exponent")
            pos = end
        if pos < len(src) and src[pos] == "i":
            kind = "IMAG"
            pos += 1
        if kind == "INT" and octal and not set(src[start:pos]) <= set("01234567"):
            raise self.fail(start, "illegal octal number")
        self.pos = pos
        return _Token(kind, src[start:pos], start)

    def _quoted(self, start: int, quote: str, kind: str, unterminated: str) -> _Token:
        src = self.src
        pos = start + 1
        runes = 0
        while True:
            if pos >= len(src) or src[pos] == "\n":
                raise self.fail(start, unterminated)
            char = src[pos]
            if char == quote:
                break
            if char == "\\":
                pos = self._escape(pos, quote)
            else:
                pos += 1
            runes += 1
        self.pos = pos + 1
        if kind == "CHAR" and runes != 1:
            raise self.fail(start, "illegal rune literal")
        return _Token(kind, src[start : pos + 1], start)

    def _escape(self, pos: int, quote: str) -> int:
        src = self.src
        char = src[pos + 1 : pos + 2]
        if char and char in "abfnrtv\\" + quote:
            return pos + 2
        width, base, limit = {
            "x": (2, 16, 255),
            "u": (4, 16, 0x10FFFF),
            "U": (8, 16, 0x10FFFF),
        }.get(char, (3, 8, 255))
        first = pos + 2 if char in ("x", "u", "U") else pos + 1
        if not char:
            raise self.fail(pos, "escape sequence not terminated")
        if char not in "xuU" and not "0" <= char <= "7":
            raise self.fail(pos, "unknown escape sequence")
        digits = src[first : first + width]
        allowed = "0123456789abcdefABCDEF" if base == 16 else "01234567"
        if len(digits) < width or not set(digits) <= set(allowed):
            raise self.fail(pos, "illegal character in escape sequence")
        value = int(digits, base)
        if value > limit or (0xD800 <= value < 0xE000 and char in "uU"):
            raise self.fail(pos, "escape sequence is invalid Unicode code point")
        return first + width


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
}


def _unquote(text: str) -> str:
    """Go's strconv.Unquote of a literal the scanner accepted."""
    if text[0] == "`":
        return text[1:-1].replace("\r", "")
    body = text[1:-1]
    if "\\" not in body:
        return body
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode("utf-8", "surrogatepass")
            i += 1
            continue
        kind = body[i + 1]
        if kind in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[kind].encode()
            i += 2
        elif kind in "uU":
            width = 4 if kind == "u" else 8
            out += chr(int(body[i + 2 : i + 2 + width], 16)).encode("utf-8")
            i += 2 + width
        else:
            width, base, first = (2, 16, i + 2) if kind == "x" else (3, 8, i + 1)
            value = int(body[first : first + width], base)
            # a byte in a string, a code point in a rune literal
            out += bytes([value]) if text[0] == '"' else chr(value).encode("utf-8")
            i = first + width
    return out.decode("utf-8", "surrogateescape")


# --- parsing ------------------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.src = source
        self.tokens = _Scanner(source, self.error_at).tokens()
        self.index = 0
        self.nesting = 0

    # errors
    def _position(self, offset: int) -> tuple[int, int]:
        before = self.src[:offset]
        line = before.count("\n") + 1
        column = len(before[before.rfind("\n") + 1 :].encode("utf-8", "surrogatepass")) + 1
        return line, column

    def error_at(self, offset: int, message: str) -> ParseError:
        line, column = self._position(offset)
        shown = self.src if len(self.src) <= 200 else self.src[:200] + "..."
        return ParseError(
            f"unable to parse expression '{shown}': {line}:{column}: {message}", line, column
        )

    def plain_error(self, offset: int, message: str) -> ParseError:
        line, column = self._position(offset)
        return ParseError(message, line, column)

    @property
    def tok(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "EOF":
            self.index += 1
        return token

    def expected(self, what: str) -> ParseError:
        token = self.tok
        if token.kind == ";" and token.text == "\n":
            found = "newline"
        elif token.kind in ("IDENT", "INT", "FLOAT", "IMAG", "CHAR", "STRING"):
            found = token.text if len(token.text) <= 40 else token.text[:40] + "..."
        elif token.kind == "KEYWORD":
            found = f"'{token.text}'"
        else:
            found = f"'{token.kind}'"
        return self.error_at(token.offset, f"expected {what}, found {found}")

    def expect(self, kind: str) -> _Token:
        if self.tok.kind != kind:
            raise self.expected(f"'{kind}'")
        return self.advance()

    def checked(self, node: Node, offset: int) -> Node:
        if node.depth > MAX_DEPTH:
            raise self.plain_error(offset, f"expression nested deeper than {MAX_DEPTH} levels")
        return node

    # grammar
    def parse(self) -> Node:
        node = self.binary(1)
        if self.tok.kind == ";" and self.tok.text == "\n":
            self.advance()
        if self.tok.kind == "=":  # Go's parser words this mistake specially
            raise self.error_at(self.tok.offset, "expected '==', found '='")
        if self.tok.kind != "EOF":
            raise self.expected("'EOF'")
        return node

    def binary(self, lowest: int) -> Node:
        left = self.unary()
        while True:
            token = self.tok
            precedence = _BINARY_PRECEDENCE.get(token.kind, 0)
            if precedence < lowest:
                return left
            self.advance()
            right = self.binary(precedence + 1)
            fn = Fn(FUNCTION_NAMES.get(token.kind, ""), [left, right])
            left = self.checked(fn, token.offset)

    def unary(self) -> Node:
        token = self.tok
        if token.kind in _UNARY or token.kind == "*":
            self.advance()
            self.nesting += 1
            if self.nesting > MAX_DEPTH:
                raise self.plain_error(
                    token.offset, f"expression nested deeper than {MAX_DEPTH} levels"
                )
            operand = self.unary()
            self.nesting -= 1
            if token.kind == "*":
                raise self.plain_error(token.offset, "unexpected expression: *ast.StarExpr")
            return self.checked(Fn(FUNCTION_NAMES.get(token.kind, ""), [operand]), token.offset)
        return self.primary()

    def primary(self) -> Node:
        start = self.tok.offset
        # the Go shape so far: ("ident", names) | ("paren"|"lit"|"call", node)
        shape, node, names = self.operand()
        while True:
            token = self.tok
            if token.kind == ".":
                self.advance()
                if self.tok.kind == "(":
                    raise self.plain_error(
                        token.offset, "unexpected expression: *ast.TypeAssertExpr"
                    )
                name = self.expect("IDENT") if self.tok.kind != "KEYWORD" else None
                if name is None:
                    raise self.expected("selector or type assertion")
                chained = shape in ("ident", "selector")
                if chained:
                    names.append(name.text)  # in place: copying made a long chain quadratic
                else:
                    names = [name.text]
                # a selector on a literal, a call or parentheses is "anchored"
                shape = "selector" if chained else "anchored"
            elif token.kind == "(":
                self.advance()
                args = self.arguments()
                if shape == "ident":
                    node = Fn(names[0], args)
                elif shape == "selector":
                    node = Fn(names[-1], args, Var(".".join(names[:-1])))
                elif shape == "anchored" and len(names) == 1:
                    assert node is not None
                    node = Fn(names[0], args, node)
                else:
                    raise self.plain_error(token.offset, "unexpected expression: *ast.CallExpr")
                node = self.checked(node, token.offset)
                shape, names = "call", []
            elif token.kind == "[":
                self.advance()
                self.nesting += 1
                index = self.binary(1)
                self.nesting -= 1
                if self.tok.kind == ":":
                    raise self.plain_error(token.offset, "unexpected expression: *ast.SliceExpr")
                self.expect("]")
                target = self.finish(shape, node, names, start)
                node = self.checked(Fn("INDEX", [target, index]), token.offset)
                shape, names = "index", []
            elif token.kind == "{":
                raise self.plain_error(token.offset, "unexpected expression: *ast.CompositeLit")
            else:
                return self.finish(shape, node, names, start)

    def finish(self, shape: str, node: Node | None, names: list[str], start: int) -> Node:
        if shape == "ident":
            lowered = names[0].lower()
            if lowered in ("true", "false"):
                return Const(lowered, ValueType.BOOL, lowered == "true")
            return Var(names[0])
        if shape == "selector":
            return Var(".".join(names))
        if shape == "anchored":
            raise self.plain_error(start, "unexpected expression: *ast.SelectorExpr")
        assert node is not None
        return node

    def arguments(self) -> list[Node]:
        args: list[Node] = []
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.plain_error(
                self.tok.offset, f"expression nested deeper than {MAX_DEPTH} levels"
            )
        while self.tok.kind != ")":
            args.append(self.binary(1))
            if self.tok.kind == "...":
                self.advance()
            if self.tok.kind != ",":
                break
            self.advance()
        if self.tok.kind != ")":
            if self.tok.kind == ";" and self.tok.text == "\n":
                raise self.error_at(self.tok.offset, "missing ',' before newline in argument list")
            raise self.expected("')'")
        self.advance()
        self.nesting -= 1
        return args

    def operand(self) -> tuple[str, Node | None, list[str]]:
        token = self.tok
        if token.kind == "IDENT":
            self.advance()
            return "ident", None, [token.text]
        if token.kind in ("INT", "FLOAT", "IMAG", "CHAR", "STRING"):
            self.advance()
            return "lit", self.constant(token), []
        if token.kind == "(":
            self.advance()
            self.nesting += 1
            if self.nesting > MAX_DEPTH:
                raise self.plain_error(
                    token.offset, f"expression nested deeper than {MAX_DEPTH} levels"
                )
            inner = self.binary(1)
            self.nesting -= 1
            self.expect(")")
            return "paren", inner, []
        if token.kind == "KEYWORD" and token.text in ("func", "map", "chan", "struct", "interface"):
            raise self.plain_error(token.offset, f"unexpected expression: {token.text}")
        if token.kind == "[":
            raise self.plain_error(token.offset, "unexpected expression: *ast.CompositeLit")
        raise self.expected("operand")

    def constant(self, token: _Token) -> Const:
        text = token.text
        try:
            if token.kind == "INT":
                return Const(text, ValueType.INT64, parse_int(text))
            if token.kind == "FLOAT":
                value = float(text)
                if value in (float("inf"), float("-inf")):
                    raise ValueError("value out of range")
                return Const(text, ValueType.DOUBLE, value)
        except ValueError as exc:
            function = "ParseInt" if token.kind == "INT" else "ParseFloat"
            reason = "value out of range" if "range" in str(exc) else "invalid syntax"
            raise self.plain_error(
                token.offset, f'strconv.{function}: parsing "{text}": {reason}'
            ) from None
        if token.kind == "IMAG":
            raise self.plain_error(token.offset, "invalid syntax")
        unquoted = _unquote(text)
        try:
            nanos = parse_duration(unquoted)
        except ValueError:
            return Const(text, ValueType.STRING, unquoted)
        return Const(text, ValueType.DURATION, nanos)


def parse(source: str) -> Node:
    """The syntax tree of ``source``; :class:`ParseError` when Mixer would not parse it."""
    try:
        source.encode("utf-8")
    except UnicodeEncodeError as exc:  # Go source is UTF-8: a lone surrogate cannot be in it
        line = source.count("\n", 0, exc.start) + 1
        raise ParseError(
            f"illegal UTF-8 encoding at offset {exc.start}",
            line,
            len(source[source.rfind("\n", 0, exc.start) + 1 : exc.start].encode("utf-8")) + 1,
        ) from None
    parser = _Parser(source)
    try:
        return parser.parse()
    except RecursionError:  # a deep stack before us: still a typed error, never a crash
        raise parser.plain_error(0, "expression nested too deeply") from None
