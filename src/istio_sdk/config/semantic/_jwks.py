"""An inline JWKS as Istio reads it: a key set (or one key) that must parse, public keys only.

Keys are imported with joserfc; a key with private parameters (``d``) or a symmetric key
(``oct``) parses but earns Istio's warning, since only public keys verify tokens.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

from joserfc.jwk import JWKRegistry


def parse(text: str) -> tuple[list[dict[str, Any]], str | None]:
    """The keys of ``text`` and, when it does not parse, why."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return [], f"failed to unmarshal JWK set: {exc}"
    if isinstance(value, dict) and "keys" in value:
        keys = value["keys"]
        if not isinstance(keys, list):
            return [], "failed to unmarshal JWK set: keys is not a list"
    elif isinstance(value, dict):
        keys = [value]
    else:
        return [], "failed to unmarshal JWK set: not a JSON object"
    for i, key in enumerate(keys):
        if not isinstance(key, dict):
            return [], f"failed to unmarshal key #{i + 1}: not a JSON object"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # joserfc warns about short keys; Istio does not
                JWKRegistry.import_key(key)
        except Exception as exc:  # joserfc raises many types for bad key material
            return [], f"failed to unmarshal key #{i + 1}: {type(exc).__name__}: {exc}"
    return keys, None


def private_key_indexes(keys: list[dict[str, Any]]) -> list[int]:
    return [i for i, key in enumerate(keys) if key.get("kty") == "oct" or "d" in key]
