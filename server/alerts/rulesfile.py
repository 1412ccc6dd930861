"""
The alerts file (C{--alerts-file}, TOML)::

    [email]                      # defaults for every email channel
    host = "smtp.example.com"
    port = 587
    starttls = true
    username = "alerts@example.com"
    password = "..."
    from = "alerts@example.com"

    [[rules]]
    name = "hot"
    filter = "room.temp"
    above = 50
    for = "30s"
    recover = 45
    notify = [{type = "email", to = ["ops@example.com"]},
              {type = "webhook", url = "http://127.0.0.1:9999/hook"}]

Each rule gets the id C{file-<name>}; names are unique in the file.
"""

import re
import tomllib

from server.alerts.rules import RuleError, check_rule


class FileRules(list):
    """
    The checked rules of a file; C{email} its C{[email]} table (the
    defaults of every email channel, the API's rules' too).
    """

    email = {}


def with_email_defaults(body, email):
    """
    C{body} with C{email} under each of its email channels' own members.
    """
    if not email or not isinstance(body, dict) or not isinstance(body.get("notify"), list):
        return body
    return dict(body, notify=[dict(email, **c) if isinstance(c, dict) and c.get("type") == "email"
                              else c for c in body["notify"]])


class RulesFileError(ValueError):
    """
    The alerts file cannot be used; the message names the file, the rule
    and the member.
    """


def file_rule_id(name):
    return "file-" + re.sub(r"[^A-Za-z0-9_\-]+", "-", name).strip("-")[:80]


def read_rules_file(path, tiers, max_terms=None, max_length=None):
    """
    The checked rules of the file at C{path}, each with its C{id} and
    C{source} C{"file"}.

    @raise RulesFileError: naming what is wrong.
    """
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise RulesFileError("alerts file %s cannot be read: %s" % (path, e.strerror or e))
    except tomllib.TOMLDecodeError as e:
        raise RulesFileError("alerts file %s is not TOML: %s" % (path, e))
    unknown = set(document) - {"rules", "email"}
    if unknown:
        raise RulesFileError("alerts file %s: unknown table(s) %s (it has [[rules]] and [email])"
                             % (path, ", ".join(sorted(unknown))))
    email = document.get("email", {})
    if not isinstance(email, dict):
        raise RulesFileError("alerts file %s: [email] must be a table" % (path,))
    rules = document.get("rules", [])
    if not isinstance(rules, list):
        raise RulesFileError("alerts file %s: rules must be an array of tables ([[rules]])"
                             % (path,))
    out = FileRules()
    out.email = dict(email)
    ids = {}
    for n, body in enumerate(rules):
        where = "rules[%d]" % (n,)
        if isinstance(body, dict):
            where += " (%r)" % (body.get("name"),)
            body = with_email_defaults(body, email)
        try:
            spec = check_rule(body, tiers, max_terms, max_length)
        except RuleError as e:
            raise RulesFileError("alerts file %s, %s: %s (member %s)" % (path, where, e, e.parameter))
        rule_id = file_rule_id(spec["name"])
        if rule_id in ids:
            raise RulesFileError("alerts file %s, %s: the name is used by rules[%d] too"
                                 % (path, where, ids[rule_id]))
        ids[rule_id] = n
        spec.update(id=rule_id, source="file")
        out.append(spec)
    return out


def apply_file_rules(engine, specs, now):
    """
    Make the engine's file rules those of C{specs}: new and changed ones
    saved, those the file no longer has deleted, unchanged ones left (with
    their instances).  Returns C{(saved, deleted)}.
    """
    saved = deleted = 0
    wanted = {spec["id"]: spec for spec in specs}
    for rule_id, rule in list(engine.rules.items()):
        if rule.spec.get("source") == "file" and rule_id not in wanted:
            engine.delete_rule(rule_id)
            deleted += 1
    for rule_id, spec in wanted.items():
        old = engine.rules.get(rule_id)
        if old is not None:
            same = {k: v for k, v in old.spec.items() if k not in ("created", "updated")}
            if same == spec:
                continue
        spec = dict(spec, created=old.spec.get("created", now) if old else now, updated=now)
        engine.put_rule(spec)
        saved += 1
    return saved, deleted
