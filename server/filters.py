"""
The metric filter syntax of the metric list and the export.

Space-separated terms, all of which must match:

  - C{cpu}: the name contains C{cpu}, ignoring case;
  - C{web*.cpu.?}: a glob on the whole name, ignoring case (C{*} any run of
    characters, dots included; C{?} exactly one character);
  - C{/^web\\d+/}: a Python regular expression searched in the name
    (C{re.search}, case-sensitive unless it says C{(?i)}).  There is no
    quoting, so a regular expression cannot contain a space: write C{\\s}
    or C{\\x20};
  - C{host:web1}: the series has tag C{host} whose value is C{web1}, ignoring
    case; the value may be a glob (C{host:web*}); C{host:} only asks that the
    tag exists;
  - C{-term}: any of the above, negated (C{-simplestats} hides the server's
    own series).

A blank filter matches everything.
"""

import re
from typing import Callable, Mapping

from server.model import ParseError

__all__ = ["compile_filter"]

Predicate = Callable[[str, Mapping[str, str]], bool]


def compile_filter(text: str) -> Predicate:
    """
    Compile C{text} into C{predicate(name, tags) -> bool}.  C{tags} is a
    mapping of tag key to value, or the sorted tuple of pairs a
    L{server.model.Sample} holds.

    @raise ParseError: a term cannot be understood; the message names it.
    """
    substrings = []
    name_patterns = []
    tag_terms = []
    excluded = []
    for term in text.split():
        # Leading dashes one at a time (not by recursion: a term of a
        # thousand dashes must not exhaust the stack); two cancel out.
        negated = False
        while term.startswith("-") and len(term) > 1:
            negated = not negated
            term = term[1:]
        if negated:
            excluded.append(compile_filter(term))
        elif term.startswith("/"):
            name_patterns.append(_compile_regex(term))
        elif ":" in term:
            key, _, value = term.partition(":")
            if not key:
                raise ParseError(
                    'filter term "%s" has no tag key: write key:value, e.g. host:web1' % (term,)
                )
            tag_terms.append((key, _compile_tag_value(value)))
        elif "*" in term or "?" in term:
            name_patterns.append(_compile_glob(term).fullmatch)
        else:
            substrings.append(term.lower())

    if not (substrings or name_patterns or tag_terms or excluded):
        return _everything

    def predicate(name, tags):
        if substrings:
            lowered = name.lower()
            for word in substrings:
                if word not in lowered:
                    return False
        for match in name_patterns:
            if match(name) is None:
                return False
        if tag_terms:
            if not isinstance(tags, Mapping):
                tags = dict(tags)
            for key, matches in tag_terms:
                value = tags.get(key)
                if value is None or not matches(value):
                    return False
        for other in excluded:
            if other(name, tags):
                return False
        return True

    return predicate


def _everything(name, tags):
    return True


def _compile_regex(term):
    if len(term) < 2 or not term.endswith("/"):
        raise ParseError(
            'filter term "%s" starts a regular expression but does not end with "/" '
            "(a regular expression cannot contain spaces; use \\s)" % (term,)
        )
    try:
        return re.compile(term[1:-1]).search
    except (re.error, OverflowError, RecursionError) as e:
        raise ParseError("invalid regular expression %s: %s" % (term, e))


def _compile_glob(pattern):
    """
    C{*} and C{?} as wildcards, everything else literal, ignoring case.

    As C{fnmatch} does, the literals after a C{*} match at their first
    place and are never backtracked into (a lookahead, then a backreference):
    a glob of many stars costs time in proportion to the name, where
    C{.*a.*a.*a...} backtracks exponentially.
    """

    def literal(part):
        return "".join("." if char == "?" else re.escape(char) for char in part)

    first, *rest = pattern.split("*")
    parts = [literal(first)]
    if rest:
        *middle, last = rest
        for number, part in enumerate(filter(None, middle), 1):
            parts.append("(?=(?P<g%d>.*?%s))(?P=g%d)" % (number, literal(part), number))
        parts.append(".*" + literal(last))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _compile_tag_value(value):
    if not value:
        return _exists
    if "*" in value or "?" in value:
        match = _compile_glob(value).fullmatch
        return lambda actual: match(actual) is not None
    lowered = value.lower()
    return lambda actual: actual.lower() == lowered


def _exists(actual):
    return True
