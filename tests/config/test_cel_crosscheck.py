"""Every CEL rule in Istio's CRDs, evaluated by our interpreter and by an independent engine.

The independent engine is the ``common-expression-language`` package (``import cel``: the Rust
``cel`` crate, with the package's Python standard-library extensions for ``substring``). Both
evaluate each rule on objects built from the schema node the rule is attached to (Hypothesis),
and on hand-built objects, one that passes and one that fails each rule; the verdicts
(accepted, or rejected because the rule is false or cannot be evaluated, as the kube-apiserver
treats both) must agree.

Rules the independent engine cannot evaluate are skipped by name, with the reason, in
``SKIPPED_FUNCTIONS``; ``test_the_cross_check_covers_every_rule`` pins how many rules are
checked and skipped, so a rule never drops out silently. Where the independent engine departs
from cel-go (and so from the kube-apiserver), ``REFERENCE_DIVERGENCES`` lists the inputs and
the generated objects stay clear of them.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import cel
import cel.stdlib
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from istio_sdk.config._cel import CelError, evaluate

# Kubernetes extension functions the independent engine does not have: rules using them are
# skipped (see test_the_cross_check_covers_every_rule for the counts).
SKIPPED_FUNCTIONS = {
    "isURL": "Kubernetes' URL library (Go's url.ParseRequestURI) is not in the cel crate",
    "url": "Kubernetes' URL library (Go's url.ParseRequestURI) is not in the cel crate",
    "getScheme": "Kubernetes' URL library is not in the cel crate",
}

# Inputs on which the independent engine departs from cel-go (rule, self, cel-go's verdict):
# generated objects avoid them, and this list shows that our interpreter sides with cel-go.
DURATION_RULE = "duration(self) >= duration('1ms')"
REFERENCE_DIVERGENCES: list[tuple[str, Any, bool, str]] = [
    (DURATION_RULE, "1e3s", False, "Go's ParseDuration has no exponents"),
    (DURATION_RULE, "1m30", False, "Go needs a unit after every number"),
    (DURATION_RULE, "1h-1m", False, "Go takes a sign only at the start"),
    (DURATION_RULE, "2562048h", False, "Go's durations are int64 nanoseconds"),
    (DURATION_RULE, "1000\u00b5s", True, "Go accepts the micro sign as a unit"),
    ("self.size() < 3", "\u00e9\u00e9", True, "CEL's string size counts code points"),
]


def _load_rules(crds: pathlib.Path) -> dict[str, list[dict[str, Any]]]:
    """Rule text -> the distinct schema nodes it is attached to, across all served versions."""
    found: dict[str, dict[str, dict[str, Any]]] = {}

    def walk(node: dict[str, Any]) -> None:
        for rule in node.get("x-kubernetes-validations", ()):
            found.setdefault(rule["rule"], {})[json.dumps(node, sort_keys=True)] = node
        for child in node.get("properties", {}).values():
            walk(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key])

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for doc in yaml.load_all(crds.read_text(), Loader=loader):
        for version in (doc or {}).get("spec", {}).get("versions", ()):
            if version.get("served"):
                walk(version["schema"]["openAPIV3Schema"])
    return {rule: list(nodes.values()) for rule, nodes in sorted(found.items())}


_CRDS = pathlib.Path(__file__).resolve().parents[3] / "shared" / "istio-api" / "crds.yaml"
RULES = _load_rules(_CRDS) if _CRDS.is_file() else {}
needs_crds = pytest.mark.skipif(not RULES, reason="../shared/istio-api/crds.yaml is not present")


def _skip_reason(rule: str) -> str | None:
    used = [name for name in SKIPPED_FUNCTIONS if re.search(rf"\b{name}\(", rule)]
    return "; ".join(SKIPPED_FUNCTIONS[name] for name in used) or None


CHECKED = [rule for rule in RULES if _skip_reason(rule) is None]


def reference(rule: str, value: Any) -> bool:
    """The independent engine's verdict: True when it accepts ``value``."""
    context = cel.Context(variables={"self": value})
    cel.stdlib.add_stdlib_to_context(context)
    try:
        return cel.evaluate(rule, context) is True
    except Exception:  # it raises ValueError, TypeError, KeyError, RuntimeError, ...
        return False


def ours(rule: str, value: Any) -> bool:
    try:
        return evaluate(rule, value)
    except CelError:
        return False


# --- objects from a schema node -------------------------------------------------------------

_WORDS = [
    "",
    "a",
    "*",
    "*.example.com",
    "a.example.com",
    "unix:///tmp/sock",
    "unix://@abstract",
    "unix:///tmp/sock/",
    "unix://",
    "unix://x",
    "10.0.0.1",
    "10.0.0.0/24",
    "http",
    "HTTP",
    "HTTPS",
    "TCP",
    "REMOVE",
    "UPSERT",
    "HOST",
    "WAYPOINT",
    "8080",
    "0",
    "65535",
    "65536",
    "-1",
    "+80",
    "8_080",
    " 80",
    "99999999999999999999",
    "abc",
    "a-b",
    "-ab",
    "ab-",
    "x" * 62,
    "x" * 63,
    "abc\n",
    "5 minutes",
]


@st.composite
def _go_duration(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        whole = draw(st.integers(0, 9999).map(str) | st.just(""))
        fraction = draw(st.text("0123456789", max_size=4))
        number = whole + "." + fraction if fraction or draw(st.booleans()) else whole
        if number in ("", "."):
            number = "1"
        parts.append(number + draw(st.sampled_from(["ns", "us", "ms", "s", "m", "h"])))
    return draw(st.sampled_from(["", "-", "+"])) + "".join(parts)


_STRINGS = st.one_of(
    st.sampled_from(_WORDS),
    st.sampled_from(_WORDS),  # twice: the words that decide rules come up more often
    _go_duration(),
    st.sampled_from(["0", "-0", "1ms", "999999ns", "0.5ms", "1h30m", "", "1", "abc"]),
    st.text("abz*/:@-_ H", max_size=8),  # no digits or dots: never a near-duration
)
_INTS = st.sampled_from([0, 1, -1, 65535, 65536, 2**31 - 1]) | st.integers(-5, 70_000)


def _from_schema(node: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Objects shaped by ``node``; below three levels (no rule looks deeper) only empty ones."""
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if node.get("x-kubernetes-int-or-string"):
        return _INTS | _STRINGS
    if kind == "object" or "properties" in node or "additionalProperties" in node:
        if depth > 3:
            return st.just({})
        properties = node.get("properties", {})
        if properties:
            return st.fixed_dictionaries(
                {},
                optional={
                    name: _from_schema(child, depth + 1) for name, child in properties.items()
                },
            )
        extra = node.get("additionalProperties")
        values = _from_schema(extra, depth + 1) if isinstance(extra, dict) else st.just("v")
        return st.dictionaries(_STRINGS, values, max_size=3)
    if kind == "array":
        items = node.get("items", {})
        if depth > 3:
            return st.just([])
        return st.lists(_from_schema(items, depth + 1) if items else _STRINGS, max_size=3)
    if kind == "string":
        return _STRINGS
    if kind == "integer":
        return _INTS
    if kind == "number":
        return _INTS | st.floats(-1e6, 1e6)
    if kind == "boolean":
        return st.booleans()
    return st.one_of(st.none(), st.booleans(), _INTS, _STRINGS)


def _cases() -> Iterator[Any]:
    for rule in CHECKED:
        for index, node in enumerate(RULES[rule]):
            yield pytest.param(rule, node, id=f"{_short(rule)}@{index}")


def _short(rule: str) -> str:
    return re.sub(r"\s+", " ", rule)[:60]


@needs_crds
@pytest.mark.parametrize(("rule", "node"), list(_cases()))
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_both_engines_agree_on_generated_objects(
    rule: str, node: dict[str, Any], data: st.DataObject
) -> None:
    value = data.draw(_from_schema(node), label="self")
    assert ours(rule, value) == reference(rule, value)


# --- one passing and one failing object per rule, by hand ------------------------------------

PORT = {"number": 80, "name": "http"}
HAND_BUILT: dict[str, tuple[Any, Any]] = {  # rule -> (an object it accepts, one it rejects)
    '!((has(self.addresses) ? self.addresses : []).exists(k, k.contains("/")) && '
    '!((has(self.resolution) ? self.resolution : "NONE") in ["STATIC", "NONE"]))': (
        {"addresses": ["10.0.0.0/24"], "resolution": "STATIC"},
        {"addresses": ["10.0.0.0/24"], "resolution": "DNS"},
    ),
    '!self.contains("*")': ("app", "a*"),
    '((has(self.operation) ? self.operation : "") == "REMOVE") ? !has(self.value) : true': (
        {"operation": "REMOVE"},
        {"operation": "REMOVE", "value": "x"},
    ),
    '((has(self.operation) ? self.operation : "") == "UPSERT") ? (self.value != "") : true': (
        {"operation": "UPSERT", "value": "x"},
        {"operation": "UPSERT", "value": ""},
    ),
    '((has(self.resolution) ? self.resolution : "") == "DNS_ROUND_ROBIN") ? '
    "((has(self.endpoints) ? self.endpoints : []).size() <= 1) : true": (
        {"resolution": "DNS_ROUND_ROBIN", "endpoints": [{"address": "a"}]},
        {"resolution": "DNS_ROUND_ROBIN", "endpoints": [{"address": "a"}, {"address": "b"}]},
    ),
    '((has(self.resolution) ? self.resolution : "NONE") == "NONE") ? !has(self.endpoints) : true': (
        {"resolution": "STATIC", "endpoints": []},
        {"endpoints": []},
    ),
    '(has(self.address) ? self.address : "").startsWith("unix://") ? !has(self.ports) : true': (
        {"address": "unix:///s"},
        {"address": "unix:///s", "ports": {"http": 80}},
    ),
    "(has(self.credentialName) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1": (
        {"credentialName": "a"},
        {"credentialName": "a", "credentialNames": ["b"]},
    ),
    "(has(self.credentialNames) ? 1 : 0) + (has(self.tlsCertificates) ? 1 : 0) <= 1": (
        {"credentialNames": ["a"]},
        {"credentialNames": ["a"], "tlsCertificates": [{}]},
    ),
    "(has(self.jwksUri) ? 1 : 0) + (has(self.jwks_uri) ? 1 : 0) + (has(self.jwks) ? 1 : 0) <= 1": (
        {"jwks": "{}"},
        {"jwks": "{}", "jwksUri": "https://a/"},
    ),
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + "
    "(has(self.targetRefs) ? 1 : 0) <= 1": (
        {"targetRefs": []},
        {"selector": {}, "targetRef": {}},
    ),
    "(has(self.selector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1": (
        {},
        {"selector": {}, "targetRefs": []},
    ),
    "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) &&\n"
    "!has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true": (
        {"serviceAccounts": ["a"]},
        {"notServiceAccounts": ["a"], "namespaces": ["b"]},
    ),
    "(has(self.tlsCertificates) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1": (
        {"tlsCertificates": [{}]},
        {"tlsCertificates": [{}], "credentialNames": ["a"]},
    ),
    '(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)': (
        {"valueFrom": "HOST"},
        {"valueFrom": "HOST", "value": "x"},
    ),
    "(has(self.workloadSelector) ? 1 : 0) + (has(self.endpoints) ? 1 : 0) <= 1": (
        {"endpoints": []},
        {"endpoints": [], "workloadSelector": {}},
    ),
    "(has(self.workloadSelector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1": (
        {"targetRefs": []},
        {"targetRefs": [], "workloadSelector": {}},
    ),
    "0 < self && self <= 65535": (65535, 65536),
    DURATION_RULE: ("1ms", "999999ns"),
    "has(self.address) || has(self.network)": ({"network": "n"}, {"ports": {}}),
    'has(self.context) ? ((self.context == "WAYPOINT") ? has(self.waypoint) : '
    "!has(self.waypoint)) : !has(self.waypoint)": (
        {"context": "WAYPOINT", "waypoint": {}},
        {"context": "SIDECAR_INBOUND", "waypoint": {}},
    ),
    "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? "
    "self.selector.matchLabels : {}).size() > 0) : true": (
        {"portLevelMtls": {}, "selector": {"matchLabels": {"app": "a"}}},
        {"portLevelMtls": {}, "selector": {}},
    ),
    "has(self.wasm) != has(self.lua)": ({"lua": {}}, {"lua": {}, "wasm": {}}),
    'self != "*"': ("a", "*"),
    'self in ["", "HTTP", "HTTPS"]': ("HTTPS", "https"),
    'self.all(key, !key.contains("*"))': ({"app": "a"}, {"a*": "a"}),
    "self.all(key, 0 < int(key) && int(key) <= 65535)": ({"8080": {}}, {"8_080": {}}),
    "self.all(key, key.size() != 0)": ({"a": "b"}, {"": "b"}),
    'self.all(key, size(key) < 63 && key.matches("^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$"))': (
        {"http-web": 80},
        {"http\n": 80},
    ),
    "self.all(l1, self.exists_one(l2, l1.number == l2.number))": (
        [PORT, {**PORT, "number": 81}],
        [PORT, {**PORT, "name": "b"}],
    ),
    "self.size() == 0": ("", "other"),
    'self.startsWith("unix://") ? !self.endsWith("/") : true': ("unix:///s", "unix:///s/"),
    'self.startsWith("unix://") ? (self.substring(7, 8) == "/" || self.substring(7, 8) == "@") '
    ": true": ("unix://@abstract", "unix://x"),
}


@needs_crds
@pytest.mark.parametrize("rule", CHECKED, ids=_short)
def test_both_engines_agree_on_a_passing_and_a_failing_object(rule: str) -> None:
    accepted, rejected = HAND_BUILT[rule]
    assert (ours(rule, accepted), reference(rule, accepted)) == (True, True)
    assert (ours(rule, rejected), reference(rule, rejected)) == (False, False)


@needs_crds
def test_the_cross_check_covers_every_rule() -> None:
    skipped = {rule: _skip_reason(rule) for rule in RULES if _skip_reason(rule)}
    occurrences = sum(len(RULES[rule]) for rule in CHECKED)
    assert set(HAND_BUILT) == set(CHECKED)
    # 36 distinct rules in Istio's CRDs: 33 cross-checked, 3 skipped (Kubernetes' URL functions).
    assert (len(RULES), len(CHECKED), len(skipped)) == (36, 33, 3), sorted(skipped)
    assert occurrences > 33  # the same rule sits on many schema nodes; each node is checked


@pytest.mark.parametrize(("rule", "value", "verdict", "why"), REFERENCE_DIVERGENCES)
def test_where_the_reference_engine_departs_from_cel_go_we_follow_cel_go(
    rule: str, value: Any, verdict: bool, why: str
) -> None:
    assert ours(rule, value) is verdict, why
    assert reference(rule, value) is not verdict, f"the reference engine now agrees: {why}"
