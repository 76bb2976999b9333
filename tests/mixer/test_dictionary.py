"""The global dictionary is indexed as Istio's proxy and Mixer index it, not as YAML reads it."""

from __future__ import annotations

import pathlib

import yaml

from istio_sdk.api.istio.policy.v1beta1 import ValueType
from istio_sdk.mixer import (
    DEFAULT_MANIFEST,
    GLOBAL_DICTIONARY,
    GLOBAL_WORD_INDEX,
    ISTIO_PROXY_MANIFEST,
    KUBERNETES_MANIFEST,
    parse_global_dictionary,
)


def test_the_shipped_list_is_the_yaml_file_by_the_text_rule(shared_dir: pathlib.Path) -> None:
    text = (shared_dir / "istio-api" / "mixer-global-dictionary.yaml").read_text()
    assert parse_global_dictionary(text) == GLOBAL_DICTIONARY
    assert len(GLOBAL_DICTIONARY) == 222


def test_quoted_entries_keep_their_quotes_where_yaml_would_drop_them(
    shared_dir: pathlib.Path,
) -> None:
    text = (shared_dir / "istio-api" / "mixer-global-dictionary.yaml").read_text()
    parsed = [str(word) for word in yaml.safe_load(text)]
    differ = [i for i, (a, b) in enumerate(zip(parsed, GLOBAL_DICTIONARY, strict=True)) if a != b]
    assert differ == [94, 111, 112, 113, 114, 218]  # YAML: 200, 0, 1, True, False, -
    assert GLOBAL_DICTIONARY[94] == "'200'"
    assert GLOBAL_DICTIONARY[111] == "'0'" and GLOBAL_DICTIONARY[112] == "'1'"
    assert GLOBAL_DICTIONARY[218] == '"-"'
    assert GLOBAL_DICTIONARY[113] == "true" and GLOBAL_DICTIONARY[134] == "0"


def test_spot_indexes() -> None:
    expected = {
        "source.ip": 0,
        "source.port": 1,
        "request.headers": 15,
        "response.code": 30,
        ":authority": 31,
        "destination.service.host": 193,
        "context.proxy_version": 221,
    }
    assert {word: GLOBAL_WORD_INDEX[word] for word in expected} == expected


def test_manifests_have_istio_13s_sizes_and_types() -> None:
    assert len(ISTIO_PROXY_MANIFEST) == 64
    assert len(KUBERNETES_MANIFEST) == 26
    assert len(DEFAULT_MANIFEST) == 90
    assert DEFAULT_MANIFEST["origin.ip"] == ValueType.IP_ADDRESS
    assert DEFAULT_MANIFEST["destination.ip"] == ValueType.IP_ADDRESS
    assert DEFAULT_MANIFEST["response.duration"] == ValueType.DURATION
    assert DEFAULT_MANIFEST["request.auth.claims"] == ValueType.STRING_MAP
    assert DEFAULT_MANIFEST["check.cache_hit"] == ValueType.BOOL
    for absent in ("source.port", "destination.service", "target.name"):
        assert absent not in DEFAULT_MANIFEST
