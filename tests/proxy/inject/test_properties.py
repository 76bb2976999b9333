"""Properties: a JSON patch turns any JSON value into any other; injection of any JSON value
either works or says why, never anything else."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from istio_sdk.proxy.inject import (
    InjectionError,
    InjectSettings,
    apply_patch,
    create_patch,
    inject_pod,
)

_KEYS = st.sampled_from(["a", "b", "a/b", "~0", "~1/", "", "name", "x~y"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)


@given(_JSON, _JSON)
@example(1, True)
@example({"a/b": [0, 1]}, {"a/b": [False, 1]})
def test_a_patch_turns_one_value_into_the_other(old: Any, new: Any) -> None:
    # compared as JSON text: 1 == True in Python, not in JSON
    patched = apply_patch(old, create_patch(old, new))
    assert json.dumps(patched, sort_keys=True) == json.dumps(new, sort_keys=True)


@given(_JSON)
def test_the_patch_between_equal_values_is_empty(value: Any) -> None:
    assert create_patch(value, value) == []


_NAMES = st.sampled_from(["app", "istio-proxy", "istio-init", "x"])
_CONTAINER = st.fixed_dictionaries(
    {"name": _NAMES},
    optional={
        "ports": st.lists(
            st.fixed_dictionaries(
                {"containerPort": st.integers(-5, 70000)}, optional={"name": st.text(max_size=3)}
            ),
            max_size=2,
        ),
        "readinessProbe": st.fixed_dictionaries(
            {},
            optional={
                "httpGet": st.fixed_dictionaries(
                    {"port": st.integers(0, 70000) | st.text(max_size=4)}
                )
            },
        ),
        "env": st.lists(
            st.fixed_dictionaries(
                {"name": st.text(max_size=3)}, optional={"value": st.text(max_size=3)}
            ),
            max_size=2,
        ),
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "limits": st.dictionaries(
                    st.sampled_from(["cpu", "memory"]), st.text(max_size=6) | st.integers()
                )
            },
        ),
    },
)
_ANNOTATIONS = st.dictionaries(
    st.sampled_from(
        [
            "sidecar.istio.io/inject",
            "sidecar.istio.io/status",
            "proxy.istio.io/config",
            "proxy.istio.io/overrides",
            "sidecar.istio.io/proxyCPU",
            "status.sidecar.istio.io/port",
            "traffic.sidecar.istio.io/excludeOutboundPorts",
            "sidecar.istio.io/interceptionMode",
            "inject.istio.io/templates",
            "prometheus.io/port",
            "sidecar.istio.io/userVolume",
        ]
    ),
    st.text(max_size=12)
    | st.sampled_from(["true", "false", "{}", "[]", "null", "15020", "TPROXY", "gateway"]),
    max_size=4,
)
_POD = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                "annotations": _ANNOTATIONS,
                "labels": st.dictionaries(st.sampled_from(["app", "version"]), st.text(max_size=4)),
            },
        ),
        "spec": st.fixed_dictionaries(
            {},
            optional={
                "containers": st.lists(_CONTAINER, max_size=3),
                "initContainers": st.lists(_CONTAINER, max_size=1),
                "hostNetwork": st.booleans(),
            },
        ),
    },
)


@given(_POD | _JSON)
def test_injection_of_anything_works_or_says_why(pod: Any) -> None:
    try:
        result = inject_pod(pod, InjectSettings())
    except InjectionError as exc:
        assert exc.problem
        return
    assert isinstance(result.pod, dict)
