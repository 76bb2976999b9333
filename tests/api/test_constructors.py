"""Generated message constructors behave as the ones ``dataclasses`` builds.

``codegen/static_init.py`` writes every message's ``__init__`` into the generated module
instead of letting ``@dataclass`` build it with ``exec`` at import time. Users must not see a
difference: the same signature (``inspect.signature``, the class docstring), the same defaults
(fresh lists and dicts per instance, enum zero members, ``None`` for messages), positional
arguments in field order, and ``__post_init__`` still running.
"""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
import warnings

import pytest

from istio_sdk.api.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from istio_sdk.testing import all_message_types, full_name

TYPES = all_message_types()


def dataclass_signature(cls: type) -> str:
    """The signature text ``dataclasses`` gives a class whose fields all have factories."""
    params = ", ".join(f"{f.name}: {f.type!r} = <factory>" for f in dataclasses.fields(cls))
    return f"({params})"


def test_every_type_has_the_dataclass_signature_and_defaults() -> None:
    for cls in TYPES:
        fields = dataclasses.fields(cls)
        signature = str(inspect.signature(cls))
        assert signature == dataclass_signature(cls) + " -> None", full_name(cls)
        if not any(f.name == "self" for f in fields):
            assert "self" in inspect.signature(cls.__init__).parameters
        first, second = cls(), cls()
        for f in fields:
            assert f.default_factory is not dataclasses.MISSING
            default = getattr(first, f.name)
            assert default == f.default_factory(), (full_name(cls), f.name)
            assert type(default) is type(f.default_factory()), (full_name(cls), f.name)
            if isinstance(default, list | dict):
                assert getattr(second, f.name) is not default, (full_name(cls), f.name)
        assert first._unknown_fields == b""  # __post_init__ ran


def test_docstrings_without_proto_comments_are_the_dataclass_ones() -> None:
    undocumented = [c for c in TYPES if c.__doc__.startswith(c.__name__ + "(")]
    assert len(undocumented) > 100
    for cls in undocumented:
        assert cls.__doc__ == cls.__name__ + dataclass_signature(cls), full_name(cls)


def test_positional_and_keyword_arguments_fill_fields_in_order() -> None:
    names = [f.name for f in dataclasses.fields(Cluster)]
    assert names[2:5] == ["name", "alt_stat_name", "type"]
    cluster = Cluster([], None, "outbound|80||a", "", ClusterDiscoveryType.EDS)
    assert (cluster.name, cluster.type) == ("outbound|80||a", ClusterDiscoveryType.EDS)
    assert Cluster(name="x") == Cluster([], None, "x")
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_field'"):
        Cluster(no_such_field=1)  # type: ignore[call-arg]


def test_post_init_warns_about_deprecated_fields() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Cluster(max_requests_per_connection=3)
    assert any("max_requests_per_connection is deprecated" in str(w.message) for w in caught)


def test_every_type_is_the_dataclass_the_decorator_would_make() -> None:
    # static_init leaves the fields to istio_sdk.codec.LazyFields, which applies @dataclass on
    # first use: the fields, their metadata, __match_args__ and pattern matching are the same.
    for cls in TYPES:
        assert dataclasses.is_dataclass(cls), full_name(cls)
        fields = dataclasses.fields(cls)
        assert [f.name for f in fields] == list(cls.__annotations__), full_name(cls)
        assert [f.type for f in fields] == list(cls.__annotations__.values()), full_name(cls)
        assert cls.__match_args__ == tuple(f.name for f in fields), full_name(cls)
        for f in fields:
            assert "betterproto" in f.metadata, (full_name(cls), f.name)
            assert f.name not in cls.__dict__, (full_name(cls), f.name)
    assert dataclasses.replace(Cluster(name="a"), name="b").name == "b"
    assert dataclasses.asdict(Cluster(name="c"))["name"] == "c"


POSITIONAL_MATCH = """
from istio_sdk.api.envoy.config.endpoint.v3 import ClusterLoadAssignment
match ClusterLoadAssignment("outbound|80||a"):
    case ClusterLoadAssignment(name, endpoints):
        print(name, len(endpoints))
"""


def test_positional_patterns_match_before_anything_reads_the_fields() -> None:
    # A fresh interpreter: nothing has made the class's dataclass fields yet.
    out = subprocess.run(
        [sys.executable, "-c", POSITIONAL_MATCH], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["outbound|80||a", "0"]
