"""Finding generated classes by full proto name (istio_sdk._messages)."""

from __future__ import annotations

import betterproto2

from istio_sdk._messages import find_message_class, full_name_of, message_pool


def test_finds_a_class_by_importing_its_package() -> None:
    cls = find_message_class("envoy.config.cluster.v3.Cluster", import_all=False)
    assert cls is not None
    assert cls.__module__ == "istio_sdk.api.envoy.config.cluster.v3"
    assert message_pool().type_to_url[cls] == "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def test_finds_a_nested_message() -> None:
    cls = find_message_class("envoy.config.cluster.v3.Cluster.CommonLbConfig", import_all=False)
    assert cls is not None
    assert cls.__name__ == "ClusterCommonLbConfig"


def test_unknown_names_are_none() -> None:
    assert find_message_class("envoy.config.cluster.v3.NoSuchMessage", import_all=False) is None
    assert find_message_class("no.such.package.Message", import_all=False) is None


def test_full_name_of_a_class_and_of_a_stranger() -> None:
    cls = find_message_class("envoy.config.cluster.v3.Cluster", import_all=False)
    assert cls is not None
    assert full_name_of(cls) == "envoy.config.cluster.v3.Cluster"

    class NotGenerated(betterproto2.Message):
        pass

    assert full_name_of(NotGenerated) is None
