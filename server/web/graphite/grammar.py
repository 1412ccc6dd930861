"""
Graphite's target grammar (graphite-web C{render/grammar_unsafe.py}) as a
small recursive-descent parser: C{text -> expression}, pure.

An expression is a L{Path} (a path expression with globs, or a tagged
path), a L{Call} (a function with positional and keyword arguments), or a
literal argument: int, float, str (quotes removed, backslashes kept, as
graphite-web keeps them), bool, None or infinity.  C{a.b|scale(2)} is
C{scale(a.b, 2)}.
"""

import re
from typing import NamedTuple, Tuple

# What may not appear unescaped in a path expression.
SYMBOLS = "(){},.'\"\\|"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"(?:-?\d+\.\d+|-?\d+)(?:[eE]-?\d+)?")
_STRING = re.compile(r"""'(?:[^'\n\r\\]|''|\\(?:[^x]|x[0-9a-fA-F]+))*'|"(?:[^"\n\r\\]|""|\\(?:[^x]|x[0-9a-fA-F]+))*\"""")
_KEYWORDS = {"true": True, "false": False, "none": None, "inf": float("inf")}


class GrammarError(ValueError):
    """
    A target that does not parse; the message says where.
    """


class Path(NamedTuple):
    text: str


class Call(NamedTuple):
    name: str
    args: Tuple
    kwargs: Tuple  # ((name, value), ...)
    raw: str


def parse(target):
    """
    The expression C{target} holds.
    """
    parser = _Parser(target)
    node = parser.expression()
    parser.space()
    if parser.pos != len(target):
        raise GrammarError("unexpected %r at character %d of %r"
                           % (target[parser.pos:parser.pos + 10], parser.pos + 1, target))
    return node


class _Parser:
    def __init__(self, text):
        self.text = text
        self.pos = 0

    def space(self):
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos].isspace():
            pos += 1
        self.pos = pos

    def fail(self, what):
        got = self.text[self.pos:self.pos + 10] or "the end"
        raise GrammarError("expected %s at character %d of %r, got %r"
                           % (what, self.pos + 1, self.text, got))

    def peek(self):
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expression(self):
        self.space()
        node = self.call_or_path()
        while True:
            save = self.pos
            self.space()
            if self.peek() != "|":
                self.pos = save
                return node
            self.pos += 1
            self.space()
            call = self.call_or_path()
            if not isinstance(call, Call):
                self.fail("a function call after '|'")
            node = call._replace(args=(node,) + call.args)

    def call_or_path(self):
        match = _NAME.match(self.text, self.pos)
        if match:
            after = match.end()
            rest = after
            while rest < len(self.text) and self.text[rest].isspace():
                rest += 1
            if rest < len(self.text) and self.text[rest] == "(":
                return self.call(match.group(), self.pos, rest + 1)
        return self.path()

    def call(self, name, start, pos):
        self.pos = pos
        args, kwargs = [], []
        self.space()
        if self.peek() != ")":
            while True:
                self.space()
                match = _NAME.match(self.text, self.pos)
                keyword = None
                if match:
                    rest = match.end()
                    while rest < len(self.text) and self.text[rest].isspace():
                        rest += 1
                    if self.text.startswith("=", rest):
                        keyword = match.group()
                        self.pos = rest + 1
                        self.space()
                value = self.argument()
                if keyword is not None:
                    kwargs.append((keyword, value))
                elif kwargs:
                    self.fail("a keyword argument (positional ones come first)")
                else:
                    args.append(value)
                self.space()
                if self.peek() == ",":
                    self.pos += 1
                    continue
                break
        if self.peek() != ")":
            self.fail("',' or ')' in the arguments of %s" % (name,))
        self.pos += 1
        return Call(name, tuple(args), tuple(kwargs), self.text[start:self.pos])

    def _ends_argument(self, pos):
        while pos < len(self.text) and self.text[pos].isspace():
            pos += 1
        return pos >= len(self.text) or self.text[pos] in ",)"

    def argument(self):
        text = self.text
        match = _NAME.match(text, self.pos)
        if match and match.group().lower() in _KEYWORDS and self._ends_argument(match.end()):
            self.pos = match.end()
            return _KEYWORDS[match.group().lower()]
        match = _NUMBER.match(text, self.pos)
        if match and self._ends_argument(match.end()):
            self.pos = match.end()
            number = match.group()
            if "." in number or "e" in number or "E" in number:
                return float(number)
            return int(number)
        if self.peek() in ("'", '"'):
            match = _STRING.match(text, self.pos)
            if not match:
                self.fail("a closing quote")
            self.pos = match.end()
            return match.group()[1:-1]
        return self.expression()

    def path(self):
        text, pos = self.text, self.pos
        out = []
        depth = 0
        while pos < len(text):
            c = text[pos]
            if c == "\\" and pos + 1 < len(text) and text[pos + 1] in SYMBOLS + "=":
                out.append(text[pos + 1])
                pos += 2
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                if not depth:
                    break
                depth -= 1
            elif c == "," and depth:
                pass
            elif c == "." and not depth:
                if pos + 1 >= len(text) or text[pos + 1] in SYMBOLS.replace("{", "").replace(
                        "\\", "") or text[pos + 1].isspace() or not out or out[-1] == ".":
                    break
            elif c in SYMBOLS or c.isspace():
                break
            out.append(c)
            pos += 1
        if depth:
            self.fail("'}' closing the '{' in a path")
        path = "".join(out)
        if not path or path.endswith("."):
            self.fail("a metric path or a function call")
        self.pos = pos
        return Path(path)
