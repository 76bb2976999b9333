"""Helpers for the analysis tests: analyze YAML text as if read from ``mesh.yaml``."""

from __future__ import annotations

import textwrap

from istio_sdk.galley.analysis import AnalysisResult, analyze
from istio_sdk.galley.analysis._load import load_text


def analyze_yaml(text: str, **options: object) -> AnalysisResult:
    """Analyze ``text`` (dedented) with its lines known, as ``istio-sdk analyze mesh.yaml``."""
    loaded, problems = load_text(textwrap.dedent(text).lstrip("\n"), "mesh.yaml")
    assert not problems, problems
    return analyze(loaded, **options)  # type: ignore[arg-type]


def lines(text: str, **options: object) -> list[str]:
    """The printed messages of an analysis."""
    return [str(m) for m in analyze_yaml(text, **options).messages]


def codes(text: str, **options: object) -> list[str]:
    """The codes of an analysis, in output order."""
    return [m.code for m in analyze_yaml(text, **options).messages]


POD = """
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}
spec:
  containers:
  - {{name: app, image: app}}
  - {{name: istio-proxy, image: proxyv2}}
"""


def pod(name: str, ns: str = "default", labels: str = "{app: web}") -> str:
    """A Pod with a proxy, as YAML text to append to a mesh."""
    return POD.format(name=name, ns=ns, labels=labels)


NAMESPACE = """
---
apiVersion: v1
kind: Namespace
metadata: {{name: {name}, labels: {{istio-injection: enabled}}}}
"""


def namespace(name: str) -> str:
    return NAMESPACE.format(name=name)


def service(
    name: str,
    ns: str = "default",
    ports: str = "[{name: http, port: 80}]",
    selector: str = "{app: web}",
) -> str:
    return f"""
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {selector}
  ports: {ports}
"""
