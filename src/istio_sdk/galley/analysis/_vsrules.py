"""VirtualService rules that can never match (IST0130) and matches that never apply (IST0131).

Istio finds these while validating a VirtualService and reports them as warnings, which its
schema analyzer turns into IST0130 and IST0131: a rule after a rule without matches, a second
rule without matches, a rule whose matches all appeared in earlier rules, a match equal to an
earlier one (ignoring its ``name``), and an HTTP prefix match covered by an earlier, shorter
prefix with the same other conditions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from istio_sdk.protojson import message_to_json

__all__ = ["RuleProblem", "unreachable_rules"]


@attrs.frozen
class RuleProblem:
    """One finding: ``code`` (IST0130 or IST0131), the template's arguments, the field path."""

    code: str
    arguments: tuple[str, ...]
    path: str


def _rule_name(rule: Any, index: int) -> str:
    name = getattr(rule, "name", "")
    return json.dumps(name) if name else f"#{index}"


def _match_key(match: Any) -> str:
    if match is None:
        return "null"
    value = message_to_json(match)
    if isinstance(value, dict):
        value.pop("name", None)
    return json.dumps(value, sort_keys=True)


@attrs.frozen
class _PrefixMatch:
    rule: str
    match: str
    prefix: str
    port: int
    method: str
    authority: str
    headers: dict[str, str]
    query: dict[str, str]
    without_headers: dict[str, str]


def _exact_or_prefix(value: Any) -> str:
    if value is None:
        return ""
    exact, prefix = getattr(value, "exact", None), getattr(value, "prefix", None)
    if exact:
        return f"exact:{exact}"
    if prefix:
        return f"prefix:{prefix}"
    return ""


def _prefix_match(rule_name: str, match: Any, index: int) -> _PrefixMatch | None:
    uri = getattr(match, "uri", None)
    prefix = getattr(uri, "prefix", None) if uri is not None else None
    if not prefix:
        return None
    return _PrefixMatch(
        rule=rule_name,
        match=_rule_name(match, index),
        prefix=prefix,
        port=getattr(match, "port", 0) or 0,
        method=_exact_or_prefix(getattr(match, "method", None)) or "exact:GET",
        authority=_exact_or_prefix(getattr(match, "authority", None)),
        headers={k: _exact_or_prefix(v) for k, v in match.headers.items()},
        query={k: _exact_or_prefix(v) for k, v in match.query_params.items()},
        without_headers={k: _exact_or_prefix(v) for k, v in match.without_headers.items()},
    )


def _covers_map(a: dict[str, str], b: dict[str, str]) -> bool:
    if len(a) != len(b):
        return False
    return all(k in b and (v == b[k] or v.startswith(b[k])) for k, v in a.items())


def _covered(a: _PrefixMatch, b: _PrefixMatch) -> bool:
    """Istio's test that the later match ``b`` is shadowed by the earlier match ``a``."""
    if not b.prefix.startswith(a.prefix) or a.port != b.port:
        return False
    if a.method != b.method and not a.method.startswith(b.method):
        return False
    if a.authority != b.authority and not a.authority.startswith(b.authority):
        return False
    return (
        _covers_map(a.headers, b.headers)
        and _covers_map(a.query, b.query)
        and _covers_map(a.without_headers, b.without_headers)
    )


def _section(rules: Sequence[Any], section: str) -> Iterator[RuleProblem]:
    seen: dict[str, int] = {}
    catch_all = -1
    prefixes: list[_PrefixMatch] = []
    for i, rule in enumerate(rules):
        name = _rule_name(rule, i) if section == "http" else f"#{i}"
        matches = list(rule.match or ())
        path = f"spec.{section}[{i}]"
        if not matches:
            if catch_all >= 0:
                yield RuleProblem("IST0130", (name, "only the last rule can have no matches"), path)
            catch_all = i
            continue
        duplicates = 0
        for j, match in enumerate(matches):
            if catch_all >= 0:
                yield RuleProblem("IST0130", (name, "route without matches defined before"), path)
                continue
            key = _match_key(match)
            if key in seen:
                at = seen[key]
                earlier = _rule_name(rules[at], at) if section == "http" else f"#{at}"
                match_name = _rule_name(match, j) if section == "http" else f"#{j}"
                yield RuleProblem("IST0131", (name, match_name, earlier), f"{path}.match[{j}]")
                duplicates += 1
                continue
            seen[key] = i
            if section == "http":
                found = _prefix_match(name, match, j)
                if found is not None:
                    prefixes.append(found)
        if duplicates == len(matches):
            yield RuleProblem("IST0130", (name, "all matches used by prior rules"), path)
    for n, first in enumerate(prefixes):
        for later in prefixes[n + 1 :]:
            if later.prefix == first.prefix or not _covered(first, later):
                continue
            shadowed = f"{later.match} of prefix {later.prefix}"
            by = f"{first.match} of prefix {first.prefix} on {first.rule}"
            yield RuleProblem("IST0131", (later.rule, shadowed, by), "spec.http")


def unreachable_rules(spec: Any) -> Iterator[RuleProblem]:
    """IST0130 and IST0131 findings of a VirtualService spec, in Istio's order."""
    for section in ("http", "tcp", "tls"):
        yield from _section(list(getattr(spec, section) or ()), section)
