"""
Which rules a new series may match, without trying every rule's filter on
it: each rule's required literal (L{server.alerts.rules.required_literal})
goes into one RE2 set, so one pass over the lower-cased name gives the
rules whose literal it contains; only those (and the rules without a
literal) have their filter tried.
"""

import re2


class RuleIndex:
    def __init__(self, rules=()):
        self.rebuild(rules)

    def rebuild(self, rules):
        by_literal = {}
        self.always = []
        for rule in rules:
            if rule.literal:
                by_literal.setdefault(rule.literal, []).append(rule)
            else:
                self.always.append(rule)
        self.groups = []
        self.set = None
        if by_literal:
            patterns = re2.Set.SearchSet()
            for literal, group in by_literal.items():
                patterns.Add(re2.escape(literal))
                self.groups.append(group)
            patterns.Compile()
            self.set = patterns

    def candidates(self, name):
        """
        The rules whose filter may match a series named C{name}.
        """
        found = list(self.always)
        if self.set is not None:
            groups = self.groups
            # RE2's set answers None when nothing matched.
            for n in self.set.Match(name.lower()) or ():
                found.extend(groups[n])
        return found
