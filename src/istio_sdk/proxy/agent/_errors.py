"""The one error type of pilot-agent's configuration (bad input, named by where it came from),
and the reader of the JSON objects the injector passes in environment variables."""

from __future__ import annotations

import json
from typing import Any

MAX_ENV_JSON_CHARS = 1 << 20


class AgentConfigError(ValueError):
    """Agent input that cannot be used (``ISTIO_KUBE_APP_PROBERS``,
    ``ISTIO_PROMETHEUS_ANNOTATIONS``, Envoy options, ...).

    ``source`` names where the bad value came from and ``problem`` says what is wrong with it.
    """

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


def env_json_object(source: str, text: str) -> dict[str, Any]:
    """The JSON object in an environment variable the injector wrote, bounded in size; any
    other text is an :class:`AgentConfigError` naming ``source``."""
    if len(text) > MAX_ENV_JSON_CHARS:
        raise AgentConfigError(source, f"longer than {MAX_ENV_JSON_CHARS} characters")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise AgentConfigError(source, f"not JSON ({str(exc)[:120]})") from None
    if not isinstance(doc, dict):
        raise AgentConfigError(source, "must be a JSON object")
    return doc
