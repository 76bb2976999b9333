"""Istio 1.3's rules for authentication Policy and MeshPolicy and the rbac.istio.io kinds."""

from __future__ import annotations

import pytest
from support.semantic import Case, check_case

POLICY = [
    Case("namespace default", {"peers": [{"mtls": {}}]}, name="default"),
    Case("targets", {"targets": [{"name": "reviews"}]}, name="reviews-policy"),
    Case(
        "no targets, not default",
        {"peers": [{"mtls": {}}]},
        name="other",
        error=(
            "metadata.name",
            'authentication policy with no target rules  must be named "default", found "other"',
        ),
    ),
    Case(
        "default with targets",
        {"targets": [{"name": "reviews"}]},
        name="default",
        error=(
            "spec.targets",
            'authentication policy with name "default" must not have any target rules',
        ),
    ),
    Case(
        "target not a label",
        {"targets": [{"name": "reviews.shop"}]},
        name="p",
        error=("spec.targets[0].name", 'target name "reviews.shop" must be a valid label'),
    ),
    Case(
        "target port 0 and no name",
        {"targets": [{"name": "r", "ports": [{}]}]},
        name="p",
        error=("spec.targets[0].ports[0]", "port number 0 must be in the range 1..65535"),
    ),
    Case(
        "issuer twice",
        {"origins": [{"jwt": {"issuer": "a"}}, {"jwt": {"issuer": "a"}}]},
        name="default",
        error=("spec.origins[1].jwt.issuer", 'jwt with issuer "a" already defined'),
    ),
    Case(
        "no issuer",
        {"origins": [{"jwt": {"jwksUri": "https://a"}}]},
        name="default",
        error=("spec.origins[0].jwt.issuer", "issuer must be set"),
    ),
    Case(
        "jwks scheme",
        {"origins": [{"jwt": {"issuer": "a", "jwksUri": "file:///k"}}]},
        name="default",
        error=("spec.origins[0].jwt.jwksUri", 'URI scheme "file" is not supported'),
    ),
]

MESH_POLICY = [
    Case("default", {"peers": [{"mtls": {}}]}, name="default"),
    Case(
        "other name",
        {"peers": [{"mtls": {}}]},
        name="mesh",
        error=(
            "metadata.name",
            'cluster-scoped authentication policy name must be "default", found "mesh"',
        ),
    ),
    Case(
        "targets",
        {"targets": [{"name": "r"}]},
        name="default",
        error=("spec.targets", "cluster-scoped authentication policy must not have targets"),
    ),
]

SERVICE_ROLE = [
    Case("rule", {"rules": [{"services": ["*"], "methods": ["GET"]}]}),
    Case("no rules", {}, error=("spec.rules", "at least 1 rule must be specified")),
    Case(
        "methods and not methods",
        {"rules": [{"methods": ["GET"], "notMethods": ["POST"]}]},
        error=(
            "spec.rules[0]",
            "cannot have both regular and *not* attributes for the same "
            "kind (i.e. methods and not_methods) for rule 0",
        ),
    ),
    Case(
        "port out of range",
        {"rules": [{"ports": [70000]}]},
        error=("spec.rules[0].ports", "at least one port is not in the range of [0, 65535]"),
    ),
    Case(
        "constraint without values",
        {"rules": [{"constraints": [{"key": "k"}]}]},
        error=(
            "spec.rules[0].constraints[0].values",
            "at least 1 value must be specified for constraint 0 in rule 0",
        ),
    ),
    Case(
        "port constraint with ports",
        {
            "rules": [
                {"ports": [80], "constraints": [{"key": "destination.port", "values": ["80"]}]}
            ]
        },
        error=(
            "spec.rules[0].constraints[0].key",
            "cannot define destination.port for rule 0 because a "
            "similar first-class field has been defined",
        ),
    ),
]

BINDING = [
    Case(
        "role ref", {"subjects": [{"user": "u"}], "roleRef": {"kind": "ServiceRole", "name": "r"}}
    ),
    Case(
        "no subjects",
        {"roleRef": {"kind": "ServiceRole", "name": "r"}},
        error=("spec.subjects", "at least 1 subject must be specified"),
    ),
    Case(
        "empty subject",
        {"subjects": [{}], "roleRef": {"kind": "ServiceRole", "name": "r"}},
        error=(
            "spec.subjects[0]",
            "empty subjects are not allowed. Found an empty subject at index 0",
        ),
    ),
    Case(
        "role ref and role",
        {"subjects": [{"user": "u"}], "roleRef": {"kind": "ServiceRole", "name": "r"}, "role": "r"},
        error=("spec", "exactly one of `roleRef`, `role`, or `actions` must be specified"),
    ),
    Case(
        "role ref kind",
        {"subjects": [{"user": "u"}], "roleRef": {"kind": "ClusterRole", "name": "r"}},
        error=(
            "spec.roleRef.kind",
            'kind set to "ClusterRole", currently the only supported value is "ServiceRole"',
        ),
    ),
    Case(
        "star in names",
        {"subjects": [{"names": ["*"]}], "role": "r"},
        error=("spec.subjects[0]", "do not use * for names or not_names (in rule 0)"),
    ),
    Case(
        "property beside its field",
        {"subjects": [{"namespaces": ["a"], "properties": {"source.namespace": "b"}}], "role": "r"},
        error=(
            "spec.subjects[0].properties",
            "cannot define source.namespace for binding 0 because a "
            "similar first-class field has been defined",
        ),
    ),
    Case(
        "root role",
        {"subjects": [{"user": "u"}], "role": "/"},
        error=("spec.role", "`role` cannot have an empty ServiceRole name"),
    ),
    Case(
        "inline actions",
        {"subjects": [{"user": "u"}], "actions": [{"methods": ["GET"], "notMethods": ["PUT"]}]},
        error=("spec.actions[0]", "methods and not_methods"),
    ),
]

RBAC_CONFIG = [
    Case("default", {"mode": "ON"}, name="default"),
    Case(
        "other name",
        {"mode": "ON"},
        name="rbac",
        error=("metadata.name", 'has invalid name(rbac), name must be "default"'),
    ),
    Case(
        "inclusion missing",
        {"mode": "ON_WITH_INCLUSION"},
        name="default",
        error=("spec.inclusion", "inclusion cannot be null (use 'inclusion: {}' for none)"),
    ),
    Case(
        "exclusion missing",
        {"mode": "ON_WITH_EXCLUSION"},
        name="default",
        error=("spec.exclusion", "exclusion cannot be null (use 'exclusion: {}' for none)"),
    ),
    Case("empty inclusion", {"mode": "ON_WITH_INCLUSION", "inclusion": {}}, name="default"),
]


@pytest.mark.parametrize("case", POLICY, ids=lambda c: c.id)
def test_authentication_policy_verdicts(case: Case) -> None:
    check_case("Policy", case)


@pytest.mark.parametrize("case", MESH_POLICY, ids=lambda c: c.id)
def test_mesh_policy_verdicts(case: Case) -> None:
    check_case("MeshPolicy", case)


@pytest.mark.parametrize("case", SERVICE_ROLE, ids=lambda c: c.id)
def test_service_role_verdicts(case: Case) -> None:
    check_case("ServiceRole", case)


@pytest.mark.parametrize("case", BINDING, ids=lambda c: c.id)
def test_service_role_binding_verdicts(case: Case) -> None:
    check_case("ServiceRoleBinding", case)


@pytest.mark.parametrize("case", RBAC_CONFIG, ids=lambda c: c.id)
def test_rbac_config_verdicts(case: Case) -> None:
    check_case("RbacConfig", case)
    check_case("ClusterRbacConfig", case)
