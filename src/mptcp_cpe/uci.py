"""UCI state as mptcp-cpe's roles want it on an OpenWrt router, and the `uci batch` that gets
there. The router's module mptcp_cpe_uci (plugins/modules) runs this under the package's
own virtualenv; the controller renders firmware from it.

A want is a list of sections of one config (``network``, ``firewall``), each a mapping:

- ``name``: the section's name (named sections only: an anonymous ``@rule[3]`` moves when
  another is added, so no rule of ours is ever anonymous);
- ``type``: the section type (``interface``, ``rule``). Given, the section is mptcp-cpe's own:
  created if missing, and every option not in ``options`` is deleted. None: the section is
  the operator's (``network.wan``), must exist, and only what the want names is touched;
- ``options``: option name -> value (a string, set as is) or list (a UCI list, in order);
- ``tokens``: option name -> words that must be in that space-separated option (netifd's
  ``reqopts``); the option's other words, the operator's, are kept in their order;
- ``items``: option name -> values that must be in that list (a zone's ``network``); the
  operator's other values are kept (an old-style space-separated option stays one);
- ``match`` instead of ``name``: {"type": t, option: value}, the one section of that type
  whose option has that value (fw4's zones are anonymous, known by their ``name`` option):
  always the operator's.

Sections whose name starts with the owned prefix and that the want does not name are
deleted: a WAN taken out of the inventory takes its sections with it.
"""

from __future__ import annotations

import re

SECTION_NAME = re.compile(r"[A-Za-z0-9_]+")
# How `uci show` names an anonymous section (a match resolves to it).
ANONYMOUS = re.compile(r"@[A-Za-z0-9_]+\[[0-9]+\]")
OPTION_NAME = SECTION_NAME


class UciError(ValueError):
    """A want that cannot be met, or `uci show` output that cannot be read."""


def _unquote(text, where):
    """The values of one `uci show` right-hand side: 'a' or 'a' 'b' ... ('\\'' inside)."""
    values, i, n = [], 0, len(text)
    while i < n:
        if text[i] != "'":
            raise UciError(f"uci show: {where}: expected a quoted value at {text[i:]!r}")
        value, i = [], i + 1
        while True:
            end = text.find("'", i)
            if end < 0:
                raise UciError(f"uci show: {where}: unterminated quote")
            value.append(text[i:end])
            i = end + 1
            if text.startswith("\\''", i):
                value.append("'")
                i += 3
            else:
                break
        values.append("".join(value))
        if i < n:
            if text[i] != " ":
                raise UciError(f"uci show: {where}: expected a space at {text[i:]!r}")
            i += 1
    return values


def parse_show(config, text):
    """`uci -q show <config>` as {section: {".type": type, option: str | [str, ...]}}, in
    file order. A one-element list reads as a string: `uci show` prints both alike."""
    sections = {}
    prefix = config + "."
    for line in text.splitlines():
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.startswith(prefix):
            raise UciError(f"uci show {config}: unexpected line {line!r}")
        path = key[len(prefix):].split(".")
        if len(path) == 1:
            sections.setdefault(path[0], {})[".type"] = value
        elif len(path) == 2:
            values = _unquote(value, key)
            sections.setdefault(path[0], {})[path[1]] = values[0] if len(values) == 1 else values
        else:
            raise UciError(f"uci show {config}: unexpected line {line!r}")
    return sections


def quote(value):
    """A value as `uci batch` and `uci set` read it: single-quoted, ' written '\\''."""
    return "'" + str(value).replace("'", "'\\''") + "'"


def _resolve(config, current, want):
    """The want with each ``match`` replaced by the name of the one section it matches."""
    resolved = []
    for section in want:
        match = section.get("match")
        if match is None:
            resolved.append(section)
            continue
        kind = match.get("type")
        keys = {k: v for k, v in match.items() if k != "type"}
        found = [name for name, options in current.items()
                 if options.get(".type") == kind and all(options.get(k) == v for k, v in keys.items())]
        what = f"{config}: the {kind} section with " + ", ".join(f"{k} {v!r}" for k, v in keys.items())
        if not found:
            raise UciError(f"{what}: not found")
        if len(found) > 1:
            raise UciError(f"{what}: {len(found)} of them ({', '.join(found)})")
        resolved.append({**{k: v for k, v in section.items() if k != "match"}, "name": found[0], "type": None})
    return resolved


def _check_want(config, want, owned_prefix):
    names = set()
    for section in want:
        name = section.get("name")
        if not isinstance(name, str) or not (SECTION_NAME.fullmatch(name) or ANONYMOUS.fullmatch(name)):
            raise UciError(f"{config}: section name {name!r} is not a UCI name (letters, digits and _)")
        if name in names:
            raise UciError(f"{config}.{name}: named twice in the want")
        names.add(name)
        if section.get("type") is None and name.startswith(owned_prefix):
            raise UciError(f"{config}.{name}: a section of the owned prefix {owned_prefix!r} needs a type")
        for kind in ("options", "tokens", "items"):
            for option, value in (section.get(kind) or {}).items():
                if not OPTION_NAME.fullmatch(option):
                    raise UciError(f"{config}.{name}: option name {option!r} is not a UCI name")
                items = value if isinstance(value, list) else [value]
                if kind != "options" and not isinstance(value, list):
                    raise UciError(f"{config}.{name}.{option}: {kind} must be a list")
                for item in items:
                    if not isinstance(item, (str, int)) or "\n" in str(item):
                        raise UciError(f"{config}.{name}.{option}: value {item!r} is not a one-line string")
                    if kind == "tokens" and (not str(item) or " " in str(item)):
                        raise UciError(f"{config}.{name}.{option}: token {item!r} is not one word")


def _as_uci(value):
    return [str(v) for v in value] if isinstance(value, list) else str(value)


def _same(current, wanted):
    """Whether an option's current value is the wanted one (a list of one reads as a string)."""
    if isinstance(wanted, list) and len(wanted) == 1:
        wanted = wanted[0]
    return current == wanted


def _set_commands(path, wanted, present):
    if isinstance(wanted, list):
        return [f"delete {path}"] * present + [f"add_list {path}={quote(v)}" for v in wanted]
    return [f"set {path}={quote(wanted)}"]


def plan(config, current, want, owned_prefix="mptcp_cpe_"):
    """The `uci batch` commands (without commit) that make ``current`` (parse_show) what
    ``want`` says; [] when it already is."""
    want = _resolve(config, current, want)
    _check_want(config, want, owned_prefix)
    commands = []
    wanted_names = {s["name"] for s in want}
    for name, options in current.items():
        if name.startswith(owned_prefix) and name not in wanted_names:
            commands.append(f"delete {config}.{name}")
    for section in want:
        name, kind = section["name"], section.get("type")
        have = current.get(name)
        base = f"{config}.{name}"
        if have is None and kind is None:
            raise UciError(f"{base}: no such section (it is the operator's: mptcp-cpe does not create it)")
        if have is not None and kind is not None and have.get(".type") != kind:
            commands.append(f"delete {base}")
            have = None
        if have is None:
            commands.append(f"set {base}={kind}")
            have = {".type": kind}
        wanted = {k: _as_uci(v) for k, v in (section.get("options") or {}).items()}
        if kind is not None:
            for option in have:
                if option != ".type" and option not in wanted and option not in (section.get("tokens") or {}) \
                        and option not in (section.get("items") or {}):
                    commands.append(f"delete {base}.{option}")
        for option, value in wanted.items():
            if option not in have or not _same(have[option], value):
                commands.extend(_set_commands(f"{base}.{option}", value, option in have))
        for option, tokens in (section.get("tokens") or {}).items():
            words = have.get(option, "")
            words = (" ".join(words) if isinstance(words, list) else words).split()
            missing = [str(t) for t in tokens if str(t) not in words]
            if missing:
                commands.append(f"set {base}.{option}={quote(' '.join(words + missing))}")
        for option, values in (section.get("items") or {}).items():
            old = have.get(option)
            old_list = [] if old is None else old if isinstance(old, list) else old.split() if " " in old else [old]
            missing = [str(v) for v in values if str(v) not in old_list]
            if not missing:
                continue
            if isinstance(old, str) and " " in old:
                commands.append(f"set {base}.{option}={quote(' '.join(old_list + missing))}")
            else:
                commands.extend(f"add_list {base}.{option}={quote(v)}" for v in missing)
    return commands


def _unquote_one(text):
    values = _unquote(text, "batch")
    if len(values) != 1:
        raise UciError(f"batch: one value expected in {text!r}")
    return values[0]


def apply(config, current, commands):
    """``current`` after ``commands`` as uci would leave it: what --diff shows and what the
    tests check a plan against (a second plan from the result is empty)."""
    state = {name: dict(options) for name, options in current.items()}
    for command in commands:
        verb, _, rest = command.partition(" ")
        key, _, value = rest.partition("=")
        path = key[len(config) + 1:].split(".")
        if verb == "delete" and len(path) == 1:
            state.pop(path[0], None)
        elif verb == "delete":
            state.get(path[0], {}).pop(path[1], None)
        elif verb == "set" and len(path) == 1:
            state[path[0]] = {".type": value}
        elif verb == "set":
            state[path[0]][path[1]] = _unquote_one(value)
        elif verb == "add_list":
            old = state[path[0]].get(path[1])
            old = [] if old is None else old if isinstance(old, list) else [old]
            new = old + [_unquote_one(value)]
            state[path[0]][path[1]] = new[0] if len(new) == 1 else new
        else:
            raise UciError(f"batch: unknown command {command!r}")
    return state


def show(config, state, names=None):
    """``state`` in `uci show` form (the sections in ``names`` only, when given)."""
    lines = []
    for name, options in state.items():
        if names is not None and name not in names:
            continue
        lines.append(f"{config}.{name}={options.get('.type', '')}")
        for option, value in options.items():
            if option == ".type":
                continue
            values = value if isinstance(value, list) else [value]
            lines.append(f"{config}.{name}.{option}=" + " ".join(quote(v) for v in values))
    return "".join(line + "\n" for line in lines)


def export(config, state):
    """``state`` as a UCI config file (/etc/config/<config>, `uci export` form)."""
    lines = [f"package {config}", ""]
    for name, options in state.items():
        lines.append(f"config {options.get('.type', '')} {quote(name)}")
        for option, value in options.items():
            if option == ".type":
                continue
            if isinstance(value, list):
                lines.extend(f"\tlist {option} {quote(v)}" for v in value)
            else:
                lines.append(f"\toption {option} {quote(value)}")
        lines.append("")
    return "\n".join(lines)


# The shell functions of a uci-defaults script, each put in only if the script calls it.
DEFAULTS_FUNCTIONS = {
    "log": 'log() { logger -t mptcp-cpe "$*"; echo "mptcp-cpe: $*" >&2; }\n',
    "has": 'has() { uci -q get "$1" >/dev/null; }\n',
    "set_unset": '# An option the operator has not set yet.\nset_unset() { has "$1" || uci set "$1=$2"; }\n',
    "add_word": ("# A word of a space-separated option (netifd's reqopts), the others kept.\n"
                 'add_word() {\n\tcur=$(uci -q get "$1")\n'
                 '\tcase " $cur " in *" $2 "*) ;; *) uci set "$1=${cur:+$cur }$2" ;; esac\n}\n'),
    "add_item": ("# A value of a list option (a zone's networks), the others kept.\n"
                 'add_item() {\n\tcase " $(uci -q get "$1") " in *" $2 "*) ;; *) uci add_list "$1=$2" ;; esac\n}\n'),
    "find_section": ("# The one anonymous section of a type whose option has a value: find_section config type option value.\n"
                     'find_section() {\n\ti=0\n\twhile uci -q get "$1.@$2[$i]" >/dev/null; do\n'
                     '\t\tif [ "$(uci -q get "$1.@$2[$i].$3")" = "$4" ]; then echo "$1.@$2[$i]"; return 0; fi\n'
                     '\t\ti=$((i + 1))\n\tdone\n\treturn 1\n}\n'),
}


def _sh(value):
    """A word for sh, single-quoted."""
    return "'" + str(value).replace("'", "'\\''") + "'"


def defaults_script(config, want, header="", owned_prefix="mptcp_cpe_"):
    """An /etc/uci-defaults script that applies ``want`` at a router's first boot (and after
    a sysupgrade that keeps the settings) without overwriting settings already made: an
    owned section is created only if it is missing, an operator's option is set only if it
    is unset, words and list values are added only if missing, and a missing operator's
    section is logged and skipped (the router still boots). Commits once; exits 0, so the
    script is removed after it ran."""
    _check_want(config, [s for s in want if "match" not in s], owned_prefix)
    lines = []
    for section in want:
        if "match" in section:
            match = dict(section["match"])
            kind = match.pop("type")
            (option, value), = match.items()
            where = f"{config}: the {kind} section with {option} {value!r}"
            lines.append(f"if s=$(find_section {config} {kind} {option} {_sh(value)}); then")
            path = '"$s"'
        else:
            name = section["name"]
            base = f"{config}.{name}"
            if section.get("type") is not None:
                lines.append(f"if ! has {base}; then")
                lines.append(f"\tuci set {base}={section['type']}")
                for option, value in (section.get("options") or {}).items():
                    if isinstance(value, list):
                        lines.extend(f"\tuci add_list {base}.{option}={_sh(v)}" for v in value)
                    else:
                        lines.append(f"\tuci set {base}.{option}={_sh(value)}")
                lines.append("fi")
                continue
            where = f"{base}: no such section"
            lines.append(f"if has {base}; then")
            path = base
        for option, value in (section.get("options") or {}).items():
            lines.append(f"\tset_unset {path}.{option} {_sh(value)}")
        for option, words in (section.get("tokens") or {}).items():
            lines.extend(f"\tadd_word {path}.{option} {_sh(w)}" for w in words)
        for option, values in (section.get("items") or {}).items():
            lines.extend(f"\tadd_item {path}.{option} {_sh(v)}" for v in values)
        lines.append("else")
        lines.append(f"\tlog {_sh(where + ': left as it is')}")
        lines.append("fi")
    lines += [f"uci commit {config}", "exit 0", ""]
    body = "\n".join(lines)
    used = [f for name, f in DEFAULTS_FUNCTIONS.items()
            if re.search(rf"\b{name}\b", body) or (name == "has" and "set_unset" in body)]
    return "\n".join(["#!/bin/sh", f"# {header}".rstrip(), "# shellcheck shell=sh", "", *used, body])
