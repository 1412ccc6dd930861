"""
The metric filter syntax of the metric list and the export.

Space-separated terms, all of which must match:

  - C{cpu}: the name contains C{cpu}, ignoring case;
  - C{web*.cpu.?}: a glob on the whole name, ignoring case (C{*} any run of
    characters, dots included; C{?} exactly one character);
  - C{/^web\\d+/}: a regular expression searched in the name
    (case-sensitive unless it says C{(?i)}).  There is no quoting, so a
    regular expression cannot contain a space: write C{\\s} or C{\\x20}.
    It runs on RE2, whose time is linear in the name whatever the pattern
    (Python's backtracking engine takes hours over C{/(.*)*x/}), so what
    RE2 cannot do in linear time is refused, naming it: backreferences,
    lookarounds, atomic groups, possessive quantifiers, conditionals.
    Python's syntax is checked first, so an invalid pattern gets Python's
    message; RE2's classes are ASCII (C{\\d} is C{[0-9]});
  - C{host:web1}: the series has tag C{host} whose value is C{web1}, ignoring
    case; the value may be a glob (C{host:web*}); C{host:} only asks that the
    tag exists;
  - C{-term}: any of the above, negated (C{-simplestats} hides the server's
    own series).

A blank filter matches everything.

A filter has at most C{max_terms} terms and C{max_length} characters (the
settings C{max_filter_terms} and C{max_filter_length}): its cost is paid for
every series.  L{run_in_slices} spreads the matching over many series across
reactor turns.
"""

import heapq
import re
import time
from itertools import islice
from typing import Callable, Mapping

import re2
from twisted.internet import defer

from server.core.model import ParseError

__all__ = ["compile_filter", "run_in_slices", "select", "sorted_runs", "merge_runs"]

Predicate = Callable[[str, Mapping[str, str]], bool]

# About this long of work per reactor turn (far under the 100 ms a stall
# would be noticed at), then the rest waits for the next turn.
SLICE_SECONDS = 0.02


def compile_filter(text: str, max_terms=None, max_length=None) -> Predicate:
    """
    Compile C{text} into C{predicate(name, tags) -> bool}.  C{tags} is a
    mapping of tag key to value, or the sorted tuple of pairs a
    L{server.core.model.Sample} holds.

    @param max_terms: the most terms allowed (L{None}: any number).
    @param max_length: the most characters allowed (L{None}: any length).
    @raise ParseError: a term cannot be understood, or the filter is over
        a limit; the message names it.
    """
    if max_length is not None and len(text) > max_length:
        raise ParseError(
            "the filter is %d characters long; at most %d are allowed (setting max_filter_length)"
            % (len(text), max_length)
        )
    terms = text.split()
    if max_terms is not None and len(terms) > max_terms:
        raise ParseError(
            "the filter has %d terms; at most %d are allowed (setting max_filter_terms)"
            % (len(terms), max_terms)
        )
    return _compile_terms(terms)


def _compile_terms(terms):
    substrings = []
    name_patterns = []
    tag_terms = []
    excluded = []
    for term in terms:
        # Leading dashes one at a time (not by recursion: a term of a
        # thousand dashes must not exhaust the stack); two cancel out.
        negated = False
        while term.startswith("-") and len(term) > 1:
            negated = not negated
            term = term[1:]
        if negated:
            excluded.append(_compile_terms([term]))
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
            if not match(name):
                return False
        if tag_terms:
            if not isinstance(tags, dict):  # not Mapping: its check is ten times slower
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


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the client's error, not ours
_RE2_OPTIONS.never_capture = True  # only whether it matches

# What RE2 refuses, by the start of its message, in words a user knows.
_UNSUPPORTED = [
    ("invalid perl operator: (?=", "lookahead (?=...)"),
    ("invalid perl operator: (?!", "negative lookahead (?!...)"),
    ("invalid perl operator: (?<=", "lookbehind (?<=...)"),
    ("invalid perl operator: (?<!", "negative lookbehind (?<!...)"),
    ("invalid perl operator: (?>", "atomic groups (?>...)"),
    ("invalid perl operator: (?(", "conditionals (?(1)...)"),
    ("invalid perl operator: (?P", "backreferences (?P=name)"),
    ("invalid perl operator: (?#", "comments (?#...)"),
    ("invalid perl operator: (?", "this flag or group"),
    ("invalid escape sequence: \\Z", "\\Z (write \\z or $)"),
    ("bad repetition operator", "possessive quantifiers (*+, ++, ?+, {n}+)"),
    ("invalid repetition size", "repetition counts above 1000"),
    ("pattern too large", "a pattern this large"),
]

# Python reads a{,5} as a{0,5}; RE2 reads it as the literal text "{,5}".
_OPEN_REPEAT = re.compile(r"(?<!\\)(?:\\\\)*\{,\d+\}")


def _compile_regex(term):
    if len(term) < 2 or not term.endswith("/"):
        raise ParseError(
            'filter term "%s" starts a regular expression but does not end with "/" '
            "(a regular expression cannot contain spaces; use \\s)" % (term,)
        )
    pattern = term[1:-1]
    # Python's parser first: its messages say what is wrong with a pattern
    # that is no regular expression at all.
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as e:
        raise ParseError("invalid regular expression %s: %s" % (term, e))
    if _OPEN_REPEAT.search(pattern):
        raise ParseError(
            "RE2 (linear time) does not support {,n} in %s (write {0,n})" % (term,))
    try:
        compiled = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else ""
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        if re.match(r"invalid escape sequence: \\[1-9]", reason):
            what = "backreferences (\\1)"
        else:
            what = next((words for start, words in _UNSUPPORTED if reason.startswith(start)),
                        "this construct")
        raise ParseError("RE2 (linear time) does not support %s in %s (%s)" % (what, term, reason))
    return _searcher(compiled)


def _searcher(compiled):
    """
    C{search(name) -> bool} for an RE2 pattern.

    The wrapper's own C{search} builds a match object and maps byte offsets
    back to characters, five times the cost of the match itself; over 500k
    series that is seconds.  RE2's C{Match} answers the spans directly
    (the first is C{(-1, -1)} when nothing matched).
    """
    raw = getattr(compiled, "_regexp", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    if raw is None or anchor is None:
        return lambda name: compiled.search(name) is not None
    match = raw.Match

    def search(name):
        encoded = name.encode("utf-8", "surrogatepass")
        return match(anchor, encoded, 0, len(encoded))[0][0] != -1

    return search


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


# -- matching many series, a slice per reactor turn ---------------------------


def run_in_slices(clock, work, budget=SLICE_SECONDS, timer=time.perf_counter):
    """
    Run the generator C{work} for about C{budget} seconds (of C{timer}) per
    turn of C{clock}'s reactor, so that a filter over 500k series never
    holds the reactor for long.  C{work} yields often (every few dozen
    items); once a slice is over budget the rest goes on after
    C{clock.callLater(0)}.  With a budget of 0 every yield ends a slice.

    @return: a L{Deferred} that fires with C{work}'s return value, or fails
        with what it raised.  Cancelling it (Klein does, when the client
        goes away) closes C{work} and stops.
    """
    later = []

    def cancel(deferred):
        if later and later[0].active():
            later[0].cancel()
        work.close()

    done = defer.Deferred(cancel)

    def step():
        del later[:]
        deadline = timer() + budget
        try:
            while True:
                next(work)
                if timer() >= deadline:
                    break
        except StopIteration as stopped:
            done.callback(stopped.value)
            return
        except Exception:
            done.errback()
            return
        later.append(clock.callLater(0, step))

    step()
    return done


def select(items, keep, every=32):
    """
    A generator for L{run_in_slices}: yields after every C{every} items and
    returns the list of C{items} for which C{keep(item)} is true, in order.
    """
    found = []
    iterator = iter(items)
    while True:
        chunk = list(islice(iterator, every))
        if not chunk:
            return found
        found.extend(filter(keep, chunk))
        yield


def sorted_runs(items, key, alive=None, keep=None, run_length=4096):
    """
    A generator for L{run_in_slices}: sorts C{items} a run of
    C{run_length} at a time (one C{list.sort} of a few thousand, a few
    milliseconds; 500k shuffled names in one sort hold the reactor for
    seconds), yielding after each.

    @param alive: if given, only the items for which it is true are kept
        (a series deleted since it was matched).
    @param keep: if given, only the first C{keep} of each run are kept (all
        that a merge limited to C{keep} can take from it).
    @return: C{(runs, count)}: the sorted runs for L{merge_runs} and how
        many items they held before C{keep} cut them.
    """
    runs = []
    count = 0
    for start in range(0, len(items), run_length):
        run = items[start:start + run_length]
        if alive is not None:
            run = list(filter(alive, run))
        run.sort(key=key)
        count += len(run)
        if keep is not None:
            del run[max(0, keep):]
        runs.append(run)
        yield
    return runs, count


def merge_runs(runs, key, limit=None, every=2048):
    """
    A generator for L{run_in_slices}: merges sorted C{runs} into one sorted
    list of at most C{limit} items, yielding after every C{every}.
    """
    if limit is not None:
        limit = max(0, limit)
    if len(runs) == 1:
        return runs[0][:limit]
    merged = heapq.merge(*runs, key=key)
    if limit is not None:
        merged = islice(merged, limit)
    out = []
    while True:
        chunk = list(islice(merged, every))
        if not chunk:
            return out
        out.extend(chunk)
        yield
