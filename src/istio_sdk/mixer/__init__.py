"""Mixer (Istio 1.3): attribute bags, their wire form, the vocabulary and the expression language.

These are the pure cores the Mixer server and client are built on:

- :class:`AttributeBag`, the typed immutable attribute set, and :mod:`istio_sdk.mixer.wire`
  (``CompressedAttributes`` both ways, Report batches in INDEPENDENT and DELTA encoding);
- :data:`GLOBAL_DICTIONARY`, the 222 words proxies and Mixer index without sending;
- :data:`DEFAULT_MANIFEST` (Istio 1.3's ``istioproxy`` + ``kubernetes`` manifests);
- :mod:`istio_sdk.mixer.expr`, CEXL, Mixer's default expression language;
- :class:`MixerClient` (:mod:`istio_sdk.mixer.client`), Check with the proxy's caches and
  batched Report.
"""

from __future__ import annotations

from istio_sdk.mixer.adapters.base import (
    AdapterError,
    AdapterParamsError,
    HandlerBuildError,
    UnknownAdapterError,
    UnsupportedTemplateError,
)
from istio_sdk.mixer.attributes import AttributeBag, AttributeValue, value_type_of
from istio_sdk.mixer.client import CheckResult, MixerClient, MixerClientOptions, MixerClientStats
from istio_sdk.mixer.dictionary import (
    GLOBAL_DICTIONARY,
    GLOBAL_DICTIONARY_BASE_SIZE,
    GLOBAL_WORD_INDEX,
    parse_global_dictionary,
)
from istio_sdk.mixer.errors import (
    AttributesError,
    EvaluationError,
    ExpressionError,
    GlobalWordCountError,
    MixerError,
    ParseError,
    TypeCheckError,
)
from istio_sdk.mixer.manifests import (
    DEFAULT_MANIFEST,
    ISTIO_PROXY_MANIFEST,
    KUBERNETES_MANIFEST,
    merge_manifests,
)
from istio_sdk.mixer.wire import (
    ReportEncoding,
    check_global_word_count,
    decode_attributes,
    decode_report,
    encode_attributes,
    encode_report,
)

__all__ = [
    "AdapterError",
    "AdapterParamsError",
    "HandlerBuildError",
    "UnknownAdapterError",
    "UnsupportedTemplateError",
    "DEFAULT_MANIFEST",
    "GLOBAL_DICTIONARY",
    "GLOBAL_DICTIONARY_BASE_SIZE",
    "GLOBAL_WORD_INDEX",
    "ISTIO_PROXY_MANIFEST",
    "KUBERNETES_MANIFEST",
    "AttributeBag",
    "CheckResult",
    "MixerClient",
    "MixerClientOptions",
    "MixerClientStats",
    "AttributeValue",
    "AttributesError",
    "EvaluationError",
    "ExpressionError",
    "GlobalWordCountError",
    "MixerError",
    "ParseError",
    "ReportEncoding",
    "TypeCheckError",
    "check_global_word_count",
    "decode_attributes",
    "decode_report",
    "encode_attributes",
    "encode_report",
    "merge_manifests",
    "parse_global_dictionary",
    "value_type_of",
]
